"""Skeleton renderers: the visual action prompt drawn from projected keypoints.

Drawing uses OpenCV's anti-aliased primitives with sub-pixel (fixed-point) coordinates; line widths scale
with the image size so a 64x64 and a 512x512 prompt show the same picture. Pure numpy/OpenCV, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vap_env.description import SkeletonGraph

_SHIFT = 4  # fixed-point fractional bits for cv2 drawing: 1/16 px precision
_SCALE = 1 << _SHIFT


def _fixed(pt: np.ndarray) -> tuple[int, int]:
    return int(round(pt[0] * _SCALE)), int(round(pt[1] * _SCALE))


@dataclass
class SkeletonRenderer:
    """Draws coloured bones and joint dots; gripper bones are drawn so openness is visible.

    Args:
        graph: Keypoint names, bones and colours (from the robot description).
        line_width: Bone width as a fraction of the image's shorter side (at least 1 px).
        dot_radius: Joint-dot radius as a fraction of the shorter side (0 disables dots).
        dot_color: RGB colour of the joint dots.
    """

    graph: SkeletonGraph
    line_width: float = 1.0 / 32.0
    dot_radius: float = 1.0 / 48.0
    dot_color: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self) -> None:
        if not 0 < self.line_width < 0.5:
            raise ValueError(
                f"`line_width` must be a fraction of the image size in (0, 0.5), got {self.line_width}"
            )
        if not 0 <= self.dot_radius < 0.5:
            raise ValueError(f"`dot_radius` must be in [0, 0.5), got {self.dot_radius}")

    def widths(self, height: int, width: int) -> tuple[int, int]:
        """(bone thickness, dot radius) in pixels for an image of this size."""
        side = min(height, width)
        return max(1, int(round(self.line_width * side))), int(round(self.dot_radius * side))

    def bone_colors(self, depth: np.ndarray) -> np.ndarray:
        """(E, 3) uint8 colours of the bones; plain skeletons ignore depth."""
        return self.graph.colors

    def bone_thickness(self, depth: np.ndarray, base: int) -> np.ndarray:
        """(E,) int thickness of each bone in pixels."""
        return np.full(len(self.graph.bones), base, dtype=np.int64)

    def render(
        self,
        keypoints_2d: np.ndarray,
        depth: np.ndarray,
        size: tuple[int, int],
        background: np.ndarray | None = None,
    ) -> np.ndarray:
        """Draw the skeleton.

        Args:
            keypoints_2d: (K, 2) pixel coordinates (u, v), pixel centres at integers.
            depth: (K,) distance along the camera axis; keypoints with depth <= 0 are behind the camera
                and their bones are skipped.
            size: (height, width) of the output.
            background: Optional (H, W, 3) uint8 image to draw over (an overlay); black if None.

        Returns:
            (H, W, 3) uint8 RGB image.
        """
        h, w = size
        kp = np.asarray(keypoints_2d, dtype=np.float64)
        depth = np.asarray(depth, dtype=np.float64)
        if kp.shape != (len(self.graph.keypoint_names), 2):
            raise ValueError(
                f"`keypoints_2d` must have shape ({len(self.graph.keypoint_names)}, 2), got {kp.shape}"
            )
        if background is None:
            img = np.zeros((h, w, 3), dtype=np.uint8)
        else:
            if background.shape != (h, w, 3) or background.dtype != np.uint8:
                raise ValueError(
                    f"`background` must be uint8 of shape {(h, w, 3)}, got {background.dtype} "
                    f"{background.shape}"
                )
            img = background.copy()
        thick, radius = self.widths(h, w)
        colors = self.bone_colors(depth)
        thickness = self.bone_thickness(depth, thick)
        visible = np.isfinite(kp).all(axis=1) & (depth > 0)
        # Far bones first so nearer ones are drawn over them (painter's algorithm).
        bone_depth = [depth[b.start] + depth[b.end] for b in self.graph.bones]
        for e in np.argsort(bone_depth)[::-1]:
            b = self.graph.bones[e]
            if visible[b.start] and visible[b.end]:
                cv2.line(
                    img,
                    _fixed(kp[b.start]),
                    _fixed(kp[b.end]),
                    tuple(int(c) for c in colors[e]),
                    int(thickness[e]),
                    cv2.LINE_AA,
                    _SHIFT,
                )
        if radius > 0:
            gripper_ends = {b.end for b in self.graph.bones if b.gripper}
            for k in np.argsort(depth)[::-1]:
                if visible[k] and k not in gripper_ends:
                    cv2.circle(img, _fixed(kp[k]), radius * _SCALE, self.dot_color, -1, cv2.LINE_AA, _SHIFT)
        return img


@dataclass
class DepthSkeletonRenderer(SkeletonRenderer):
    """A skeleton whose bones encode depth: nearer bones are brighter and thicker.

    The paper leaves open whether 2D skeletons lose useful 3D cues; this prompt keeps the bone hue (which
    identifies the link) and puts depth into brightness and width, relative to a working depth range.

    Args:
        near: Depth (m) drawn at full brightness and ``max_scale`` width.
        far: Depth (m) drawn at ``min_brightness`` and unit width.
        min_brightness: Brightness factor at ``far``.
        max_scale: Width factor at ``near``.
    """

    near: float = 0.6
    far: float = 2.0
    min_brightness: float = 0.35
    max_scale: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.near < self.far:
            raise ValueError(f"need 0 < `near` < `far`, got near={self.near}, far={self.far}")

    def _closeness(self, depth: np.ndarray) -> np.ndarray:
        d = np.array([(depth[b.start] + depth[b.end]) / 2 for b in self.graph.bones])
        return np.clip((self.far - d) / (self.far - self.near), 0.0, 1.0)

    def bone_colors(self, depth: np.ndarray) -> np.ndarray:
        scale = self.min_brightness + (1 - self.min_brightness) * self._closeness(depth)
        return np.clip(self.graph.colors * scale[:, None], 0, 255).astype(np.uint8)

    def bone_thickness(self, depth: np.ndarray, base: int) -> np.ndarray:
        scale = 1.0 + (self.max_scale - 1.0) * self._closeness(depth)
        return np.maximum(1, np.round(base * scale)).astype(np.int64)
