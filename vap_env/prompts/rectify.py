"""Homography rectification: re-align prompts drawn from a slightly mis-calibrated camera with the frames.

A skeleton is only as good as the camera it is projected through. With recorded data the extrinsics are
often off by a few degrees or centimetres, and the skeleton then floats beside the robot. The paper fixes
this with MatchAnything; here the same idea runs on OpenCV: render the robot (robot-only, from the robot's
private PyBullet client) through the *assumed* camera, register that render to the *observed* frame with a
homography, and move the prompt's keypoints (or warp the prompt image) by it. For the small rotations and
translations of a mis-calibration, the image motion of the robot is close to a homography (exactly one for
a pure rotation; the parallax of a few centimetres at a metre or more is a fraction of a pixel).

Two estimators run and a verification score picks between them:

- **dense** (the workhorse): gradient-magnitude images of render and frame; a template-matching search
  for the translation (the dominant image motion, which gives ECC a start inside its basin); then
  coarse-to-fine ``cv2.findTransformECC`` (translation, affine, homography), restricted to the robot's
  neighbourhood in the render. Gradients rather than intensities, because edges are what a CAD render
  and a real frame share.
- **features**: ORB keypoints and descriptors (restricted to the robot in the render), a 2-NN ratio test
  and ``cv2.findHomography`` with RANSAC, refined by ECC. ORB was chosen over SIFT because on the
  texture-poor robot renders SIFT's matches were wrong more often (measured on Panda/xArm at 128 px).

Measured on Panda, KUKA and xArm with 4 degree / 4 cm perturbations: at 64 px, features alone recover only
part of the gap (the robot is ~40 px tall, too few corners even after upsampling), while the dense path
recovers all of it; at 128 and 256 px both work. Images are therefore matched at ``match_size`` pixels on
the short side (upsampled when smaller), which gives ORB's 31-px patches and ECC's pyramid room.

A result is accepted only if it raises the gradient correlation between the frame and the warped render
(over the robot's neighbourhood) above ``min_score`` and above the identity's by ``min_gain``, and moves
no image corner by more than ``max_shift``; otherwise the identity comes back with ``success=False`` and a
reason, so callers can always apply the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pybullet as p

from vap_env.camera import Camera
from vap_env.kinematics import Robot

RECTIFICATION_METHODS = ("auto", "dense", "features")


@dataclass
class RectificationConfig:
    """Settings of :func:`estimate_rectification`.

    Args:
        method: ``"auto"`` (both estimators, the best-scoring wins), ``"dense"`` or ``"features"``.
        match_size: Short side (px) both images are resized to before matching.
        max_shift: Largest plausible image motion, as a fraction of the short side: the translation
            search range, and a sanity bound on how far the homography may move an image corner.
        max_features: ORB keypoints detected per image.
        ratio: Lowe's ratio-test threshold for the 2-NN descriptor matches.
        ransac_threshold: RANSAC reprojection threshold in pixels at ``match_size``.
        min_inliers: RANSAC inliers needed before a feature homography is considered.
        ecc_levels: Pyramid levels of the dense estimator (the coarsest is ``match_size / 2**(levels-1)``).
        ecc_iterations: ECC iterations per pyramid level and motion model.
        min_score: Smallest acceptable gradient correlation between frame and warped render.
        min_gain: How much the homography must raise that correlation over the identity.
    """

    method: str = "auto"
    match_size: int = 256
    max_shift: float = 0.3
    max_features: int = 1000
    ratio: float = 0.8
    ransac_threshold: float = 3.0
    min_inliers: int = 12
    ecc_levels: int = 4
    ecc_iterations: int = 60
    min_score: float = 0.4
    min_gain: float = 0.05

    def __post_init__(self) -> None:
        if self.method not in RECTIFICATION_METHODS:
            raise ValueError(f"`method` must be one of {RECTIFICATION_METHODS}, got {self.method!r}")
        if self.match_size < 32:
            raise ValueError(f"`match_size` must be >= 32 pixels, got {self.match_size}")
        if not 0 < self.max_shift < 1:
            raise ValueError(f"`max_shift` must be a fraction in (0, 1), got {self.max_shift}")
        if not 0 < self.ratio <= 1:
            raise ValueError(f"`ratio` must be in (0, 1], got {self.ratio}")
        if self.min_inliers < 4:
            raise ValueError(
                f"`min_inliers` must be >= 4 (a homography has 8 degrees of freedom), got {self.min_inliers}"
            )
        for name in ("max_features", "ecc_levels", "ecc_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.ransac_threshold <= 0:
            raise ValueError(f"`ransac_threshold` must be > 0, got {self.ransac_threshold}")
        if not -1 <= self.min_score <= 1:
            raise ValueError(f"`min_score` must be a correlation in [-1, 1], got {self.min_score}")


@dataclass(frozen=True)
class Rectification:
    """A homography from the assumed camera's pixels to the observed frame's pixels.

    Args:
        homography: (3, 3) matrix; the identity when estimation failed.
        success: Whether the estimate passed verification.
        method: ``"dense"``, ``"features"`` or ``"identity"``.
        inliers: RANSAC inlier matches of the feature estimate (0 when none was found).
        score: Gradient correlation between frame and warped render with ``homography`` (-1 if unknown).
        identity_score: The same correlation without rectification.
        reason: Why estimation failed (empty on success).
        size: (height, width) of the images the homography applies to.
    """

    homography: np.ndarray
    success: bool
    method: str
    inliers: int
    score: float
    identity_score: float
    reason: str
    size: tuple[int, int]

    @property
    def H(self) -> np.ndarray:  # noqa: N802 - the usual name of a homography
        """(3, 3) homography, assumed-camera pixels -> observed pixels."""
        return self.homography

    @classmethod
    def identity(
        cls,
        size: tuple[int, int],
        reason: str,
        inliers: int = 0,
        score: float = -1.0,
        identity_score: float = -1.0,
    ) -> Rectification:
        """The do-nothing rectification, recording why no homography was accepted."""
        return cls(np.eye(3), False, "identity", inliers, score, identity_score, reason, size)

    def apply_points(self, uv: np.ndarray) -> np.ndarray:
        """Move pixel coordinates (..., 2) from the assumed camera's image into the observed frame."""
        uv = np.asarray(uv, dtype=np.float64)
        if uv.shape[-1] != 2:
            raise ValueError(f"`uv` must have shape (..., 2), got {uv.shape}")
        h = np.concatenate([uv, np.ones(uv.shape[:-1] + (1,))], axis=-1) @ self.homography.T
        w = h[..., 2:]
        return h[..., :2] / np.where(np.abs(w) < 1e-12, 1e-12, w)

    def warp(self, image: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Warp an image rendered from the assumed camera (e.g. a prompt) into the observed frame.

        Re-drawing the prompt from :meth:`apply_points` keeps line widths exact; warping is for prompts that
        are not drawn from keypoints (masks, depth).
        """
        h, w = self.size
        if image.shape[:2] != (h, w):
            raise ValueError(f"`image` must be {h}x{w} like the matched frame, got {image.shape[:2]}")
        return cv2.warpPerspective(
            image, self.homography, (w, h), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )


def render_robot_rgb(
    robot: Robot, q: np.ndarray, gripper: float, camera: Camera
) -> tuple[np.ndarray, np.ndarray]:
    """Robot-only RGB render from the robot's private client: (H, W, 3) uint8 and its (H, W) bool mask."""
    robot.pose(q, gripper)
    view, proj = camera.to_pybullet()
    _, _, rgb, _, seg = robot.client.getCameraImage(
        camera.width, camera.height, view, proj, renderer=p.ER_TINY_RENDERER
    )
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(camera.height, camera.width, 4)[..., :3]
    return np.ascontiguousarray(rgb), np.asarray(seg).reshape(camera.height, camera.width) >= 0


def estimate_rectification(
    robot: Robot,
    q: np.ndarray,
    gripper: float,
    assumed_camera: Camera,
    observed_frame: np.ndarray,
    config: RectificationConfig | None = None,
) -> Rectification:
    """Estimate the homography that moves prompts drawn from ``assumed_camera`` onto ``observed_frame``.

    Args:
        robot: Kinematic model; its private client renders the robot.
        q: (J,) arm joint positions at the time of the frame.
        gripper: Gripper openness in [0, 1].
        assumed_camera: The (possibly mis-calibrated) camera the prompt is drawn from; same size as the frame.
        observed_frame: (H, W, 3) or (H, W) uint8 camera frame showing the robot.
        config: Estimator settings; defaults to :class:`RectificationConfig()`.

    Returns:
        A :class:`Rectification`; on failure the identity with ``success=False`` and the reason.
    """
    cfg = config or RectificationConfig()
    frame = np.asarray(observed_frame)
    channels_ok = frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3))
    if frame.dtype != np.uint8 or not channels_ok:
        raise ValueError(
            f"`observed_frame` must be a uint8 (H, W, 3) or (H, W) image, got {frame.dtype} {frame.shape}"
        )
    h, w = frame.shape[:2]
    if (assumed_camera.height, assumed_camera.width) != (h, w):
        raise ValueError(
            f"`assumed_camera` is {assumed_camera.width}x{assumed_camera.height} but the frame "
            f"is {w}x{h}; pass camera.resized({w}, {h})"
        )
    size = (h, w)
    rgb, mask = render_robot_rgb(robot, q, gripper, assumed_camera)
    if mask.sum() < 4:
        return Rectification.identity(size, "the robot is not visible from the assumed camera")

    # 1. Both images at the matching scale; S maps frame pixels to matching pixels (pixel centres at integers,
    # as cv2.resize places them).
    s = cfg.match_size / min(h, w)
    mw, mh = int(round(w * s)), int(round(h * s))
    sx, sy = mw / w, mh / h
    S = np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2], [0.0, 0.0, 1.0]])
    interp = cv2.INTER_LINEAR if s >= 1 else cv2.INTER_AREA
    obs_grey = cv2.resize(_grey(frame), (mw, mh), interpolation=interp)
    ren_grey = cv2.resize(_grey(rgb), (mw, mh), interpolation=interp)
    # The robot's neighbourhood: its silhouette edges must be inside, so dilate by a few percent.
    k = 2 * int(round(0.03 * cfg.match_size)) + 1
    region = cv2.dilate(
        cv2.resize(mask.astype(np.uint8) * 255, (mw, mh), interpolation=cv2.INTER_NEAREST),
        np.ones((k, k), np.uint8),
    )
    sigma = cfg.match_size / 128.0
    obs_grad, ren_grad = _gradient(obs_grey, sigma), _gradient(ren_grey, sigma)
    if float(obs_grad.std()) < 1e-4:
        return Rectification.identity(size, "the observed frame has no structure to match (it is uniform)")

    # 2. Candidate homographies (in matching pixels, render -> frame).
    candidates: dict[str, np.ndarray] = {}
    inliers, notes = 0, []
    if cfg.method in ("auto", "features"):
        H_feat, inliers, note = _feature_homography(ren_grey, region, obs_grey, cfg)
        if H_feat is None:
            notes.append(note)
        else:
            refined = _ecc(obs_grad, ren_grad, region, H_feat, cfg, levels=2, schedule=("homography",))
            candidates["features"] = H_feat if refined is None else refined
    if cfg.method in ("auto", "dense"):
        H0 = _translation_search(obs_grad, ren_grad, region, cfg.max_shift)
        H_dense = _ecc(
            obs_grad,
            ren_grad,
            region,
            H0,
            cfg,
            levels=cfg.ecc_levels,
            schedule=("translation", "affine") + ("homography",) * max(cfg.ecc_levels - 2, 1),
        )
        if H_dense is None:
            notes.append("dense ECC registration did not converge")
        else:
            candidates["dense"] = H_dense

    # 3. Verification: the best-scoring plausible candidate, if it beats the identity.
    id_score = _alignment_score(obs_grad, ren_grad, region, np.eye(3))
    best, best_score = None, -np.inf
    for name, H in candidates.items():
        if not _plausible(H, region, cfg.max_shift * cfg.match_size):
            notes.append(
                f"{name} homography moves the robot by more than max_shift={cfg.max_shift} or distorts it"
            )
            continue
        sc = _alignment_score(obs_grad, ren_grad, region, H)
        if sc > best_score:
            best, best_score = name, sc
    if best is None:
        return Rectification.identity(
            size, "; ".join(notes) or "no candidate homography", inliers, identity_score=id_score
        )
    if best_score < cfg.min_score or best_score < id_score + cfg.min_gain:
        return Rectification.identity(
            size,
            f"best homography ({best}) correlates {best_score:.3f} with the frame against "
            f"{id_score:.3f} without it (need >= {cfg.min_score} and a gain >= {cfg.min_gain}): "
            "nothing reliable to match",
            inliers,
            best_score,
            id_score,
        )
    H = np.linalg.inv(S) @ candidates[best] @ S
    return Rectification(H / H[2, 2], True, best, inliers, best_score, id_score, "", size)


# --------------------------------------------------------------------------------------------- internals
def _grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[..., 0]
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _gradient(grey: np.ndarray, sigma: float) -> np.ndarray:
    """Blurred gradient magnitude, float32: edges carry the alignment, the blur widens ECC's basin."""
    g = grey.astype(np.float32) / 255.0
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.GaussianBlur(cv2.magnitude(gx, gy), (0, 0), sigma)


def _feature_homography(
    ren: np.ndarray, region: np.ndarray, obs: np.ndarray, cfg: RectificationConfig
) -> tuple[np.ndarray | None, int, str]:
    """ORB + ratio test + RANSAC; returns (H render -> frame or None, inliers, why it failed)."""
    # Low FAST threshold and small patches: the renders are smooth and the robot is small.
    orb = cv2.ORB_create(cfg.max_features, edgeThreshold=15, patchSize=15, fastThreshold=5)
    k1, d1 = orb.detectAndCompute(ren, region)
    k2, d2 = orb.detectAndCompute(obs, None)
    if d1 is None or d2 is None or len(k1) < 4 or len(k2) < 4:
        return None, 0, f"too few ORB features (render {len(k1)}, frame {len(k2)})"
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(d1, d2, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < cfg.ratio * m[1].distance]
    if len(good) < cfg.min_inliers:
        return None, 0, f"{len(good)} ORB matches pass the ratio test (need {cfg.min_inliers})"
    src = np.float32([k1[m.queryIdx].pt for m in good])
    dst = np.float32([k2[m.trainIdx].pt for m in good])
    H, inl = cv2.findHomography(src, dst, cv2.RANSAC, cfg.ransac_threshold)
    n = 0 if inl is None else int(inl.sum())
    if H is None or n < cfg.min_inliers:
        return None, n, f"{n} RANSAC inliers among {len(good)} ORB matches (need {cfg.min_inliers})"
    return H, n, ""


def _translation_search(obs: np.ndarray, ren: np.ndarray, region: np.ndarray, max_shift: float) -> np.ndarray:
    """Translation (as a 3x3 render -> frame homography) maximising edge correlation within ``max_shift``."""
    ys, xs = np.nonzero(region)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    pad = int(round(max_shift * min(obs.shape)))
    big = cv2.copyMakeBorder(obs, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    window = big[y0 : y1 + 2 * pad, x0 : x1 + 2 * pad]
    score = cv2.matchTemplate(window, ren[y0:y1, x0:x1], cv2.TM_CCORR_NORMED)
    _, _, _, (dx, dy) = cv2.minMaxLoc(np.nan_to_num(score, nan=-1.0))
    T = np.eye(3)
    T[0, 2], T[1, 2] = dx - pad, dy - pad
    return T


_MOTIONS = {
    "translation": cv2.MOTION_TRANSLATION,
    "affine": cv2.MOTION_AFFINE,
    "homography": cv2.MOTION_HOMOGRAPHY,
}


def _ecc(
    obs: np.ndarray,
    ren: np.ndarray,
    region: np.ndarray,
    H_init: np.ndarray,
    cfg: RectificationConfig,
    levels: int,
    schedule: tuple[str, ...],
) -> np.ndarray | None:
    """Coarse-to-fine ECC from ``H_init`` (render -> frame); ``schedule[i]`` at level i, coarsest first.

    ECC warps its *input* onto its *template*; the frame is the template and the render (with the robot's
    neighbourhood as the valid mask) the input, so only robot pixels drive the fit and the background of the
    frame cannot. The warp it returns maps frame -> render, the inverse of what is wanted.
    """
    levels = max(1, min(levels, int(np.log2(min(obs.shape) / 16)) + 1))  # coarsest level >= 16 px
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, cfg.ecc_iterations, 1e-5)
    down = np.diag([2.0 ** -(levels - 1), 2.0 ** -(levels - 1), 1.0])
    W = down @ np.linalg.inv(H_init) @ np.linalg.inv(down)
    ok = False
    for i, lvl in enumerate(reversed(range(levels))):
        f = 2.0**-lvl
        t = cv2.resize(obs, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if lvl else obs
        r = cv2.resize(ren, (t.shape[1], t.shape[0]), interpolation=cv2.INTER_AREA) if lvl else ren
        m = cv2.resize(region, (t.shape[1], t.shape[0]), interpolation=cv2.INTER_NEAREST) if lvl else region
        motion = _MOTIONS[schedule[min(i, len(schedule) - 1)]]
        try:
            if motion == cv2.MOTION_HOMOGRAPHY:
                _, out = cv2.findTransformECC(t, r, W.astype(np.float32), motion, criteria, m, 3)
                W = out.astype(np.float64)
            else:
                _, out = cv2.findTransformECC(t, r, W[:2].astype(np.float32), motion, criteria, m, 3)
                W = np.vstack([out.astype(np.float64), [0.0, 0.0, 1.0]])
            ok = True
        except cv2.error:
            pass  # no convergence at this level (too little structure); keep the previous estimate
        if lvl:
            W = np.diag([2.0, 2.0, 1.0]) @ W @ np.diag([0.5, 0.5, 1.0])
    if not ok or not np.all(np.isfinite(W)) or abs(np.linalg.det(W)) < 1e-9:
        return None
    H = np.linalg.inv(W)
    return H / H[2, 2]


def _plausible(H: np.ndarray, region: np.ndarray, max_px: float) -> bool:
    """Finite, orientation-preserving, not folding or scaling the robot by 2x, and moving no corner of the
    robot's bounding box farther than ``max_px``. Only the robot's box is checked: the homography is fitted
    there, and far from it a small perspective term may legitimately swing the image corners a long way."""
    if not np.all(np.isfinite(H)) or np.linalg.det(H[:2, :2]) <= 0:
        return False
    ys, xs = np.nonzero(region)
    box = np.array(
        [[xs.min(), ys.min()], [xs.max(), ys.min()], [xs.max(), ys.max()], [xs.min(), ys.max()]],
        dtype=np.float64,
    )
    moved = cv2.perspectiveTransform(box[None], H)[0]
    if not np.all(np.isfinite(moved)):
        return False
    area_ratio = cv2.contourArea(moved.astype(np.float32)) / max(cv2.contourArea(box.astype(np.float32)), 1.0)
    return bool(0.5 <= area_ratio <= 2.0 and np.max(np.linalg.norm(moved - box, axis=1)) <= max_px)


def _alignment_score(obs: np.ndarray, ren: np.ndarray, region: np.ndarray, H: np.ndarray) -> float:
    """Correlation of frame and warped-render gradients over the warped robot neighbourhood."""
    h, w = obs.shape
    warped = cv2.warpPerspective(ren, H, (w, h), flags=cv2.INTER_LINEAR)
    sel = cv2.warpPerspective(region, H, (w, h), flags=cv2.INTER_NEAREST) > 0
    if sel.sum() < 16:
        return -1.0
    a, b = obs[sel].astype(np.float64), warped[sel].astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else -1.0
