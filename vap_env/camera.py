"""Pinhole cameras: intrinsics, extrinsics, projection, and PyBullet matrix conversion.

Conventions (OpenCV): the camera frame has x right, y down, z forward; pixel centres sit at integer
coordinates, so pixel ``(row=v, col=u)`` covers ``[u-0.5, u+0.5)``. PyBullet's view/projection matrices
follow OpenGL (camera looks down -z, y up) with the TinyRenderer's own pixel sampling, measured against
rendered markers; :meth:`Camera.from_pybullet` and :meth:`Camera.to_pybullet` convert exactly between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p

from vap_env.description import CameraSpec

# OpenGL camera frame -> OpenCV camera frame (flip y and z).
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera.

    Args:
        intrinsics: (3, 3) matrix K.
        extrinsics: (4, 4) world -> camera transform (OpenCV camera frame).
        width: Image width in pixels.
        height: Image height in pixels.
        near: Near clipping distance (m), used for PyBullet rendering.
        far: Far clipping distance (m).
    """

    intrinsics: np.ndarray
    extrinsics: np.ndarray
    width: int
    height: int
    near: float = 0.01
    far: float = 5.0

    def __post_init__(self) -> None:
        K = np.asarray(self.intrinsics, dtype=np.float64)
        T = np.asarray(self.extrinsics, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"`intrinsics` must be a 3x3 matrix, got shape {K.shape}")
        if T.shape != (4, 4):
            raise ValueError(f"`extrinsics` must be a 4x4 matrix, got shape {T.shape}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"`width` and `height` must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "intrinsics", K)
        object.__setattr__(self, "extrinsics", T)

    # ----------------------------------------------------------------------------------------- constructors
    @classmethod
    def from_pybullet(
        cls, view: list[float] | np.ndarray, projection: list[float] | np.ndarray, width: int, height: int
    ) -> Camera:
        """From PyBullet's column-major 16-float view and projection matrices."""
        V = np.asarray(view, dtype=np.float64).reshape(4, 4).T
        P = np.asarray(projection, dtype=np.float64).reshape(4, 4).T
        fx, fy = P[0, 0] * width / 2.0, P[1, 1] * height / 2.0
        # PyBullet's TinyRenderer samples pixel (row r, column c) at NDC ((2c)/W - 1, 1 - 2(r+1)/H): measured
        # against rendered markers, the OpenGL half-pixel convention would put every point (+0.5, -0.5) px off.
        cx = (1.0 - P[0, 2]) * width / 2.0
        cy = (1.0 + P[1, 2]) * height / 2.0 - 1.0
        near = P[2, 3] / (P[2, 2] - 1.0)
        far = P[2, 3] / (P[2, 2] + 1.0)
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return cls(K, _GL_TO_CV @ V, int(width), int(height), float(near), float(far))

    @classmethod
    def look_at(
        cls,
        eye: np.ndarray | list[float],
        target: np.ndarray | list[float],
        width: int,
        height: int,
        fov: float = 45.0,
        up: tuple[float, float, float] = (0.0, 0.0, 1.0),
        near: float = 0.01,
        far: float = 5.0,
    ) -> Camera:
        """A camera at ``eye`` looking at ``target``; ``fov`` is the vertical field of view in degrees."""
        eye, target, up_v = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
        forward = target - eye
        if np.linalg.norm(forward) < 1e-9:
            raise ValueError("`eye` and `target` must differ")
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, up_v)
        if np.linalg.norm(right) < 1e-9:
            raise ValueError("`up` must not be parallel to the viewing direction")
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        R = np.stack([right, down, forward])
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = -R @ eye
        return cls(_intrinsics_from_fov(fov, width, height), T, int(width), int(height), near, far)

    @classmethod
    def orbit(
        cls,
        target: tuple[float, float, float] | np.ndarray,
        distance: float,
        yaw: float,
        pitch: float,
        width: int,
        height: int,
        fov: float = 45.0,
        near: float = 0.01,
        far: float = 5.0,
    ) -> Camera:
        """PyBullet's debug-camera parametrisation (yaw/pitch in degrees around ``target``, z up)."""
        view = p.computeViewMatrixFromYawPitchRoll(
            list(map(float, target)), float(distance), float(yaw), float(pitch), 0.0, 2
        )
        proj = p.computeProjectionMatrixFOV(float(fov), width / height, near, far)
        return cls.from_pybullet(view, proj, width, height)

    @classmethod
    def from_spec(cls, spec: CameraSpec, width: int, height: int) -> Camera:
        return cls.orbit(spec.target, spec.distance, spec.yaw, spec.pitch, width, height, spec.fov)

    # ----------------------------------------------------------------------------------------- conversions
    def to_pybullet(self) -> tuple[list[float], list[float]]:
        """(view, projection) as PyBullet's ``getCameraImage`` takes them (column-major 16-float lists)."""
        V = _GL_TO_CV @ self.extrinsics  # the flip is its own inverse
        K, w, h, n, f = self.intrinsics, self.width, self.height, self.near, self.far
        P = np.zeros((4, 4))
        P[0, 0] = 2.0 * K[0, 0] / w
        P[1, 1] = 2.0 * K[1, 1] / h
        P[0, 2] = 1.0 - 2.0 * K[0, 2] / w
        P[1, 2] = 2.0 * (K[1, 2] + 1.0) / h - 1.0
        P[2, 2] = -(f + n) / (f - n)
        P[2, 3] = -2.0 * f * n / (f - n)
        P[3, 2] = -1.0
        return V.T.reshape(-1).tolist(), P.T.reshape(-1).tolist()

    def resized(self, width: int, height: int) -> Camera:
        """The same camera with an image of another size (intrinsics scaled, pixel-centre convention kept)."""
        sx, sy = width / self.width, height / self.height
        K = self.intrinsics.copy()
        K[0, 0] *= sx
        K[1, 1] *= sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return Camera(K, self.extrinsics.copy(), width, height, self.near, self.far)

    def to_dict(self) -> dict:
        return {
            "intrinsics": self.intrinsics.tolist(),
            "extrinsics": self.extrinsics.tolist(),
            "width": self.width,
            "height": self.height,
            "near": self.near,
            "far": self.far,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        return cls(
            np.asarray(d["intrinsics"]),
            np.asarray(d["extrinsics"]),
            int(d["width"]),
            int(d["height"]),
            float(d.get("near", 0.01)),
            float(d.get("far", 5.0)),
        )

    # ----------------------------------------------------------------------------------------- geometry
    @property
    def position(self) -> np.ndarray:
        """Camera centre in the world frame, (3,)."""
        R, t = self.extrinsics[:3, :3], self.extrinsics[:3, 3]
        return -R.T @ t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points to pixels.

        Args:
            points: (..., 3) world coordinates.

        Returns:
            uv: (..., 2) pixel coordinates (u = column, v = row; centres at integers).
            depth: (...,) distance along the optical axis (m); <= 0 means behind the camera.
        """
        pts = np.asarray(points, dtype=np.float64)
        cam = pts @ self.extrinsics[:3, :3].T + self.extrinsics[:3, 3]
        z = cam[..., 2]
        safe = np.where(np.abs(z) < 1e-9, 1e-9, z)
        uv = (cam[..., :2] / safe[..., None]) @ self.intrinsics[:2, :2].T + self.intrinsics[:2, 2]
        return uv, z

    def unproject_to_plane(self, uv: np.ndarray, plane_z: float = 0.0) -> np.ndarray:
        """Back-project pixels onto the horizontal world plane ``z = plane_z``.

        Args:
            uv: (..., 2) pixel coordinates.

        Returns:
            (..., 3) world points; NaN where the ray does not hit the plane in front of the camera.
        """
        uv = np.asarray(uv, dtype=np.float64)
        ones = np.ones(uv.shape[:-1] + (1,))
        rays_cam = np.concatenate([uv, ones], axis=-1) @ np.linalg.inv(self.intrinsics).T
        R = self.extrinsics[:3, :3]
        rays = rays_cam @ R  # R.T @ ray, batched
        origin = self.position
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (plane_z - origin[2]) / rays[..., 2]
        out = origin + s[..., None] * rays
        out[~(s > 0)] = np.nan
        return out

    def linear_depth(self, depth_buffer: np.ndarray) -> np.ndarray:
        """Metric depth (m, along the optical axis) from a PyBullet/OpenGL depth buffer in [0, 1]."""
        d = np.asarray(depth_buffer, dtype=np.float64)
        return self.far * self.near / (self.far - (self.far - self.near) * d)


def _intrinsics_from_fov(fov: float, width: int, height: int) -> np.ndarray:
    fy = (height / 2.0) / np.tan(np.deg2rad(fov) / 2.0)
    return np.array([[fy, 0.0, width / 2.0 - 0.5], [0.0, fy, height / 2.0 - 0.5], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class ViewpointSampler:
    """Random viewpoints on a spherical shell around a workspace target (for viewpoint generalisation).

    Args:
        target: Point the cameras look at (m).
        distance: (min, max) distance from the target (m).
        yaw: (min, max) azimuth in degrees (PyBullet convention).
        pitch: (min, max) elevation in degrees (negative looks down).
        fov: (min, max) vertical field of view in degrees.
        target_jitter: Uniform jitter (m) added to the target on each axis.
    """

    target: tuple[float, float, float]
    distance: tuple[float, float]
    yaw: tuple[float, float]
    pitch: tuple[float, float]
    fov: tuple[float, float] = (40.0, 50.0)
    target_jitter: float = 0.03

    def __post_init__(self) -> None:
        for name in ("distance", "yaw", "pitch", "fov"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"`{name}` must be (min, max) with min <= max, got ({lo}, {hi})")
        if self.pitch[1] >= 0 or self.pitch[0] <= -90:
            raise ValueError(f"`pitch` must lie in (-90, 0) so the camera looks down, got {self.pitch}")

    @classmethod
    def around(
        cls,
        spec: CameraSpec,
        yaw_range: float = 40.0,
        pitch_range: tuple[float, float] = (-55.0, -20.0),
        distance_scale: tuple[float, float] = (0.85, 1.15),
    ) -> ViewpointSampler:
        """Viewpoints around a robot's default camera: yaw within ``±yaw_range`` degrees of it."""
        return cls(
            target=tuple(spec.target),
            distance=(spec.distance * distance_scale[0], spec.distance * distance_scale[1]),
            yaw=(spec.yaw - yaw_range, spec.yaw + yaw_range),
            pitch=pitch_range,
            fov=(spec.fov - 5.0, spec.fov + 5.0),
        )

    def sample(self, rng: np.random.Generator, width: int, height: int) -> Camera:
        target = np.asarray(self.target) + rng.uniform(-self.target_jitter, self.target_jitter, size=3)
        return Camera.orbit(
            target,
            rng.uniform(*self.distance),
            rng.uniform(*self.yaw),
            rng.uniform(*self.pitch),
            width,
            height,
            fov=rng.uniform(*self.fov),
        )
