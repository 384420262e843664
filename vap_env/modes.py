"""The modes an environment is made with, named once for the simulator, the world-model envs and the CLI.

Plain tuples in a module that imports nothing, so the command line (which must not import PyBullet or
torch while it builds its parser) offers the same choices the envs accept.
"""

from __future__ import annotations

OBS_MODES = ("image", "state", "both")
"""``image``: (H, W, 3) uint8; ``state``: the proprioceptive + task vector; ``both``: a Dict of the two."""
CAMERA_MODES = ("fixed", "random")
"""``fixed``: the robot's default view; ``random``: a new viewpoint per episode."""
ACTION_MODES = ("ee_delta", "joint_delta")
"""``ee_delta``: TCP displacement + gripper; ``joint_delta``: arm joint displacement + gripper."""
