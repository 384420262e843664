"""Hand prompts: the skeleton of a tracked human hand, for hand-object video.

The paper trains one world model on robot and human data by giving both the same kind of prompt. A hand has
no kinematic model here; its 21 keypoints (MediaPipe/OpenPose order, ``robots/human_hand.toml``) come from a
tracker, either as pixel coordinates or as 3D points that a :class:`~vap_env.camera.Camera` projects.
Trackers jitter, so a track can be One-Euro filtered before drawing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vap_env.camera import Camera
from vap_env.description import RobotDescription, load_description
from vap_env.prompts.filters import OneEuroFilter
from vap_env.prompts.skeleton import SkeletonRenderer

POINT_FRAMES = ("world", "camera")


class HandPrompter:
    """Draws a hand skeleton from 21 tracked keypoints.

    Args:
        camera: Projects 3D keypoints and sets the size; optional for 2D keypoints if ``size`` is given.
        size: (height, width) of the prompt; defaults to the camera's.
        description: The hand description (a :class:`RobotDescription` of kind ``"hand"``, a name or a path).
        renderer: Skeleton renderer; defaults to thinner lines and dots than the arm skeleton's, since a
            hand's joints are close together.
        points_frame: Frame of 3D keypoints: ``"world"`` (projected with the camera's extrinsics) or
            ``"camera"`` (already in the OpenCV camera frame, as many hand trackers return them).
        smoothing: A :class:`OneEuroFilter` applied over time by :meth:`smooth` and :meth:`render_track`
            (it is reset at the start of each track); None draws tracks as given. Its ``beta`` multiplies a
            speed, so it depends on the track's units: e.g. ``beta=20`` for 3D tracks in metres and ``0.05``
            for 2D tracks in pixels (a hand at 40 cm, 128 px; tests/prompts/test_hand.py measures both).

    Example:
        >>> smoothing = OneEuroFilter(frequency=30, min_cutoff=1.0, beta=0.05)
        >>> hp = HandPrompter(size=(256, 256), smoothing=smoothing)
        >>> video = hp.render_track(track_uv)   # track_uv: (T, 21, 2) pixels -> (T, 256, 256, 3) uint8
    """

    def __init__(
        self,
        camera: Camera | None = None,
        size: tuple[int, int] | None = None,
        description: RobotDescription | str | Path = "human_hand",
        renderer: SkeletonRenderer | None = None,
        points_frame: str = "world",
        smoothing: OneEuroFilter | None = None,
    ) -> None:
        if not isinstance(description, RobotDescription):
            description = load_description(description)
        self.desc = description
        if self.desc.kind != "hand":
            raise ValueError(
                f"`description` must be a hand (kind 'hand'), got {self.desc.name!r} of kind "
                f"{self.desc.kind!r}"
            )
        if points_frame not in POINT_FRAMES:
            raise ValueError(f"`points_frame` must be one of {POINT_FRAMES}, got {points_frame!r}")
        if size is None and camera is None:
            raise ValueError("give a `camera` or a `size` (height, width) for the prompt image")
        if size is not None and (len(size) != 2 or min(size) <= 0):
            raise ValueError(f"`size` must be (height, width) with positive entries, got {size}")
        self.camera = camera
        self.size = (int(size[0]), int(size[1])) if size is not None else (camera.height, camera.width)
        self.points_frame = points_frame
        self.renderer = renderer or SkeletonRenderer(self.desc.graph, line_width=1 / 48, dot_radius=1 / 96)
        if len(self.renderer.graph.keypoint_names) != self.num_keypoints:
            n = len(self.renderer.graph.keypoint_names)
            raise ValueError(f"`renderer` draws {n} keypoints, the hand has {self.num_keypoints}")
        self.smoothing = smoothing

    @property
    def num_keypoints(self) -> int:
        return len(self.desc.keypoints)

    def rest_pose(self) -> np.ndarray:
        """(K, 3) canonical open hand in the hand frame (m), from the description's keypoint offsets."""
        return np.array([k.offset for k in self.desc.keypoints], dtype=np.float64)

    def project(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (K, 2) and depth (K,) of one frame's keypoints.

        Args:
            keypoints: (K, 2) pixels (depth is set to 1: all in front) or (K, 3) points in ``points_frame``.
                NaN marks a keypoint the tracker lost; its bones are not drawn.
        """
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.ndim != 2 or kp.shape[0] != self.num_keypoints or kp.shape[1] not in (2, 3):
            k = self.num_keypoints
            raise ValueError(f"`keypoints` must have shape ({k}, 2) or ({k}, 3), got {kp.shape}")
        if kp.shape[1] == 2:
            return kp, np.where(np.isfinite(kp).all(axis=1), 1.0, np.nan)
        if self.camera is None:
            raise ValueError("3D keypoints need a `camera` to be projected; pass one to HandPrompter")
        cam = self.camera
        if (cam.height, cam.width) != self.size:
            cam = cam.resized(self.size[1], self.size[0])
        if self.points_frame == "world":
            return cam.project(kp)
        z = kp[:, 2]
        safe = np.where(np.abs(z) < 1e-9, 1e-9, z)
        return (kp[:, :2] / safe[:, None]) @ cam.intrinsics[:2, :2].T + cam.intrinsics[:2, 2], z

    def render(self, keypoints: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
        """The hand skeleton of one frame: (H, W, 3) uint8, drawn over ``background`` if given."""
        uv, depth = self.project(keypoints)
        depth = np.where(np.isfinite(depth), depth, -1.0)  # lost keypoints count as behind the camera
        return self.renderer.render(uv, depth, self.size, background=background)

    def smooth(self, track: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        """One-Euro filter a (T, K, 2|3) track with ``smoothing`` (returned unchanged, as float, if None).

        3D tracks are filtered in 3D, before projection, so the filter's speed threshold is in metres/s.
        """
        track = np.asarray(track, dtype=np.float64)
        if track.ndim != 3:
            raise ValueError(f"`track` must have shape (T, {self.num_keypoints}, 2|3), got {track.shape}")
        if self.smoothing is None:
            return track.copy()
        if timestamps is not None and np.shape(timestamps) != (len(track),):
            raise ValueError(f"`timestamps` must have shape ({len(track)},), got {np.shape(timestamps)}")
        self.smoothing.reset()
        out = (
            np.stack(
                [
                    self.smoothing(x, None if timestamps is None else float(timestamps[i]))
                    for i, x in enumerate(track)
                ]
            )
            if len(track)
            else track.copy()
        )
        self.smoothing.reset()
        return out

    def render_track(
        self, track: np.ndarray, backgrounds: np.ndarray | None = None, timestamps: np.ndarray | None = None
    ) -> np.ndarray:
        """Prompt video of a keypoint track.

        Args:
            track: (T, K, 2) pixels or (T, K, 3) points.
            backgrounds: Optional (T, H, W, 3) uint8 frames to draw over.
            timestamps: Optional (T,) times (s) for the filter; otherwise it assumes its ``frequency``.

        Returns:
            (T, H, W, 3) uint8.
        """
        smoothed = self.smooth(track, timestamps)
        if backgrounds is not None and len(backgrounds) != len(smoothed):
            raise ValueError(f"`backgrounds` has {len(backgrounds)} frames for a track of {len(smoothed)}")
        h, w = self.size
        out = np.zeros((len(smoothed), h, w, 3), dtype=np.uint8)
        for i, kp in enumerate(smoothed):
            out[i] = self.render(kp, None if backgrounds is None else backgrounds[i])
        return out
