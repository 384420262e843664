"""Visual action prompts: what the world model is conditioned on, rendered from a robot state.

``ActionPrompter`` turns a robot state into a prompt of one kind:

- ``skeleton`` (default): coloured bones, joint dots and gripper fingers, projected through the camera;
- ``depth_skeleton``: the same with depth in bone brightness and width;
- ``mask`` / ``depth``: a robot-only PyBullet render (silhouette, or depth as grey levels) — the paper's
  higher-fidelity mesh/depth prompt;
- ``state``: the raw joint vector plus gripper (not an image; the model embeds it);
- ``none``: an all-zero image (the no-action baseline keeps the same shapes).
"""

from __future__ import annotations

import numpy as np

from vap_env.camera import Camera
from vap_env.kinematics import Robot
from vap_env.prompts.filters import OneEuroFilter, filter_track
from vap_env.prompts.hand import HandPrompter
from vap_env.prompts.rectify import Rectification, RectificationConfig, estimate_rectification
from vap_env.prompts.skeleton import DepthSkeletonRenderer, SkeletonRenderer

PROMPT_KINDS = ("skeleton", "depth_skeleton", "mask", "depth", "state", "none")
IMAGE_PROMPT_KINDS = ("skeleton", "depth_skeleton", "mask", "depth", "none")

__all__ = [
    "PROMPT_KINDS",
    "IMAGE_PROMPT_KINDS",
    "ActionPrompter",
    "SkeletonRenderer",
    "DepthSkeletonRenderer",
    "HandPrompter",
    "OneEuroFilter",
    "filter_track",
    "Rectification",
    "RectificationConfig",
    "estimate_rectification",
]


class ActionPrompter:
    """Renders the prompt of a robot state seen through a camera.

    Args:
        robot: Kinematic model (its private PyBullet client renders mask/depth prompts).
        camera: The camera the world model's frames are seen from.
        kind: One of ``PROMPT_KINDS``.
    """

    def __init__(self, robot: Robot, camera: Camera, kind: str = "skeleton") -> None:
        if kind not in PROMPT_KINDS:
            raise ValueError(f"unknown prompt kind {kind!r}; valid kinds: {', '.join(PROMPT_KINDS)}")
        self.robot, self.camera, self.kind = robot, camera, kind
        self.skeleton = (
            DepthSkeletonRenderer(robot.graph) if kind == "depth_skeleton" else SkeletonRenderer(robot.graph)
        )

    @property
    def state_dim(self) -> int:
        """Length of the ``state`` prompt vector: arm joints + gripper."""
        return self.robot.num_joints + 1

    def project(self, q: np.ndarray, gripper: float) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (K, 2) in pixels and their depth (K,) for a robot state."""
        return self.camera.project(self.robot.fk(q, gripper))

    def render(self, q: np.ndarray, gripper: float) -> np.ndarray:
        """The prompt of state ``(q, gripper)``: (H, W, 3) uint8, or (J + 1,) float32 for ``state``."""
        h, w = self.camera.height, self.camera.width
        if self.kind == "state":
            q = np.asarray(q, dtype=np.float32)
            return np.concatenate([q, [np.float32(gripper)]]).astype(np.float32)
        if self.kind == "none":
            return np.zeros((h, w, 3), dtype=np.uint8)
        if self.kind in ("mask", "depth"):
            mask, depth = self.robot.render_mask_depth(q, gripper, self.camera)
            if self.kind == "mask":
                grey = mask.astype(np.uint8) * 255
            else:  # nearer = brighter, over the depth range the robot occupies in this view
                d = np.where(mask, depth, np.nan)
                lo, hi = self._depth_range()
                grey = np.where(mask, 255 - 200 * np.clip((d - lo) / (hi - lo), 0, 1), 0).astype(np.uint8)
            return np.repeat(grey[..., None], 3, axis=-1)
        uv, z = self.project(q, gripper)
        return self.skeleton.render(uv, z, (h, w))

    def overlay(self, frame: np.ndarray, q: np.ndarray, gripper: float) -> np.ndarray:
        """The skeleton drawn over a camera frame (H, W, 3) uint8 — for looking at alignment."""
        uv, z = self.project(q, gripper)
        return self.skeleton.render(uv, z, frame.shape[:2], background=frame)

    def _depth_range(self) -> tuple[float, float]:
        d = np.linalg.norm(self.camera.position - np.array(self.robot.desc.camera.target))
        return max(d - 0.8, 0.05), d + 0.8
