"""``ActionPrompter``: the visual action prompt of a robot state, of any kind in the prompt-kind table."""

from __future__ import annotations

import numpy as np

from vap_env.camera import Camera
from vap_env.kinematics import Robot
from vap_env.prompts.kinds import PromptKind, prompt_kind
from vap_env.prompts.skeleton import SkeletonRenderer


class ActionPrompter:
    """Renders the prompt of a robot state seen through a camera.

    Args:
        robot: Kinematic model (its private PyBullet client renders mask/depth prompts).
        camera: The camera the world model's frames are seen from.
        kind: A name in :data:`~vap_env.prompts.kinds.PROMPT_KINDS`.

    Attributes:
        prompt_kind: The kind's table entry (what it renders and how the model reads it).
        skeleton: The skeleton renderer of the kind (skeleton kinds draw with it; :meth:`overlay` too).
    """

    def __init__(self, robot: Robot, camera: Camera, kind: str = "skeleton") -> None:
        self.prompt_kind: PromptKind = prompt_kind(kind)
        self.robot, self.camera, self.kind = robot, camera, kind
        build = self.prompt_kind.skeleton or SkeletonRenderer
        self.skeleton = build(robot.graph)

    @property
    def state_dim(self) -> int:
        """Length of the ``state`` prompt vector: arm joints + gripper."""
        return self.robot.num_joints + 1

    def project(self, q: np.ndarray, gripper: float) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (K, 2) in pixels and their depth (K,) for a robot state."""
        return self.camera.project(self.robot.fk(q, gripper))

    def render(self, q: np.ndarray, gripper: float) -> np.ndarray:
        """The prompt of state ``(q, gripper)``: (H, W, 3) uint8 for image kinds (and ``none``), (J + 1,)
        float32 for ``state``."""
        return self.prompt_kind.render(self, q, gripper)

    def overlay(self, frame: np.ndarray, q: np.ndarray, gripper: float) -> np.ndarray:
        """The skeleton drawn over a camera frame (H, W, 3) uint8 — for looking at alignment."""
        uv, z = self.project(q, gripper)
        return self.skeleton.render(uv, z, frame.shape[:2], background=frame)
