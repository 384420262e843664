"""Motion-compensated frames: a frame's robot moved to the next commanded pose by the robot's own kinematics.

The world model draws the next frame from the context frames and the prompt. Measured (experiment 11 in
``docs/results/interaction_experiments.md``): every model blurs the arm at the first generated frame although
the context holds it sharp, because it redraws the arm from the prompt instead of moving the context's. Yet
the kinematics know each link's rigid motion between two commanded states exactly. :func:`warp_to_pose` moves
the pixels of a frame's robot to the next state, so that a model given the warped frame as context only has to
correct it (the disoccluded background, the objects the arm pushes) rather than redraw the robot.

Per pixel of the robot at the next state (the convex-piece render of :mod:`vap_env.prompts.hull`, which says
which piece is seen there), the source position in the frame is the piece's motion inverted: for each piece,
an affine map fitted (least squares) from its points' projections at the next state to their projections at
the frame's state; one map per piece is exact for a rigid piece under an affine camera and within a fraction
of a pixel for the few-centimetre steps between frames. Background where the robot was and no longer is
(disoccluded) is filled by OpenCV's Telea inpainting from the background around the robot's silhouette in the
frame; everything else is the frame unchanged (the cube the arm pushes is the model's to move, unless the
object is moved too: :func:`move_object`, by a learned object dynamics, ``WorldModelConfig.object_warp``). A
robot pixel with nothing to move there (its source outside the frame: the arm coming into view; or not the
robot's: a part newly turned to the camera) takes its colours from the robot's own render
(:class:`RobotAppearance`: PyBullet's TinyRenderer, the URDF's visual meshes and colours, through the camera
grown by a margin, moved piece by piece like the frame and redone only when it lacks the pixels); where that
render shows no robot (the convex pieces and the visual meshes differ at the edges), the inpainted
background.

Measured on the 30 held-out 128x128 episodes of experiment 12 (1305 steps, workspace camera): 5.1 % of the
robot's pixels have no source; elsewhere the warped frame is 32.1 dB from the next frame where repeating the
frame is 28.5 (the robot's pixels: 23.7 against 19.2 dB). About 5 ms a frame on one core, plus ~25 ms for
each render of the robot. Drawing those pixels instead of marking them (experiment 12d against
12b) raised a fine-tuned model's robot ST-IoU at horizon 8 from 0.75 to 0.83: at the workspace framing the hand
comes into view from above during the approach, and the render is the only place its appearance comes from.
The render draws the robot as the simulator does; on a real robot it is a likeness.

Written here: no chosen package warps an image by per-link rigid motions; OpenCV's ``remap`` and
``inpaint`` do the pixel work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vap_env.camera import Camera
from vap_env.kinematics import Robot
from vap_env.prompts.hull import _PIXEL_OFFSET, piece_index_image, posed_pieces
from vap_env.prompts.rectify import render_robot_rgb

_INPAINT_RADIUS = 3  # pixels of background the inpainting reads around a disoccluded region
_EDGE = 1  # pixels the robot's silhouette at the frame's state is grown by (the hull render's edge error)
_MARGIN = 0.5  # of the frame's side, added on every side of the appearance render (see RobotAppearance)
_STALE = 2  # pixels the appearance render may lack (outside it, or hidden there) before it is redone


@dataclass(frozen=True, eq=False)
class PosedRobot:
    """The robot at one state (``joints``, ``gripper``): its convex pieces projected
    (:func:`~vap_env.prompts.hull.posed_pieces`) and which piece is seen at each pixel
    (:func:`~vap_env.prompts.hull.piece_index_image`)."""

    pieces: list[tuple[np.ndarray, np.ndarray | None]]
    ids: np.ndarray
    joints: np.ndarray
    gripper: float

    @classmethod
    def at(cls, robot: Robot, camera: Camera, joints: np.ndarray, gripper: float) -> PosedRobot:
        pieces = posed_pieces(robot, joints, float(gripper), camera)
        return cls(pieces, piece_index_image(pieces, camera), np.array(joints, dtype=float), float(gripper))


class RobotAppearance:
    """What the robot looks like where a warped frame has nothing to show (a hand coming into view, a part
    turned to the camera): PyBullet's TinyRenderer render of the robot alone (the URDF's visual meshes and
    colours), through the frame's camera grown by half the frame's side on every side, moved to later states
    piece by piece as the frame is, and rendered again only when a pixel asked for is outside it or hidden
    there behind another piece (a couple of pixels are let pass). Keep one per episode (one camera):
    successive states are close, so one render serves several steps.

    Written here: a render costs ~25 ms whatever the image size (TinyRenderer's cost is in the meshes), and
    two thirds of a 128x128 episode's frames have pixels to fill (measured, experiment 13), so rendering each
    of them would cost as much as the simulator's own frame.
    """

    def __init__(self, robot: Robot, camera: Camera) -> None:
        self.robot, self.camera = robot, camera
        m = int(round(_MARGIN * max(camera.width, camera.height)))
        K = camera.intrinsics.copy()
        K[0, 2] += m
        K[1, 2] += m
        self._grown = Camera(K, camera.extrinsics, camera.width + 2 * m, camera.height + 2 * m, camera.near,
                             camera.far)  # fmt: skip
        self._posed: PosedRobot | None = None  # the rendered state, through the grown camera
        self._rgb = np.zeros((0, 0, 3), np.uint8)
        self.renders = 0  # how many renders it took so far

    def colours(
        self, target: PosedRobot, rows: np.ndarray, cols: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The robot's colours at pixels ``(rows, cols)`` of ``target`` (robot pixels there): ``(n, 3)`` uint8
        and ``(n,)`` bool, false where the render shows no robot (its meshes and the convex pieces differ at
        the edges)."""
        if self._posed is not None:
            rgb, drawn, stale = self._sample(target, rows, cols)
            if stale <= _STALE:
                return rgb, drawn
        self._render(target.joints, target.gripper)
        return self._sample(target, rows, cols)[:2]

    def _render(self, joints: np.ndarray, gripper: float) -> None:
        rgb, mask = render_robot_rgb(self.robot, joints, gripper, self._grown)
        posed = PosedRobot.at(self.robot, self._grown, joints, gripper)
        posed.ids[~mask] = 0  # where the meshes show no robot there is no colour to take
        self._posed, self._rgb = posed, rgb
        self.renders += 1

    def _sample(
        self, target: PosedRobot, rows: np.ndarray, cols: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """The render's colours at the pixels, whether it shows the same piece there, and how many pixels it
        lacks for being stale (outside it, or another piece in front: the meshes' own edges do not count)."""
        import cv2

        assert self._posed is not None
        pieces = target.ids[rows, cols]
        sources = _map_pixels(target, self._posed, rows, cols)
        x, y = np.round(sources[:, 0]).astype(int), np.round(sources[:, 1]).astype(int)
        h, w = self._posed.ids.shape
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        there = np.full(len(rows), -1)
        there[inside] = self._posed.ids[y[inside], x[inside]]
        drawn = there == pieces
        stale = int(((there != pieces) & (there != 0)).sum())  # outside (-1) or another piece in front
        maps = sources.astype(np.float32).reshape(-1, 1, 2)
        rgb = cv2.remap(
            self._rgb, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return rgb.reshape(-1, 3), drawn, stale


def _map_pixels(target: PosedRobot, source: PosedRobot, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(n, 2)`` float ``(x, y)``: where the robot pixels ``(rows, cols)`` of ``target`` were in ``source``'s
    image. Per piece an affine map (least squares) from its points' projections at ``target`` to those at
    ``source``: exact for a rigid piece under an affine camera, within a fraction of a pixel for the
    few-centimetre steps between frames. A piece ``source`` does not draw (through the near plane) stays."""
    pieces = target.ids[rows, cols]
    affines = np.tile(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), (len(target.pieces) + 1, 1, 1))
    for k in np.unique(pieces[pieces > 0]) - 1:
        (uv_after, _), (uv_before, z_before) = target.pieces[k], source.pieces[k]
        if z_before is None:  # the piece was through the near plane: nothing of it to move
            continue
        design = np.column_stack([uv_after + _PIXEL_OFFSET, np.ones(len(uv_after))])
        affines[k + 1], *_ = np.linalg.lstsq(design, uv_before + _PIXEL_OFFSET, rcond=None)
    pixels = np.column_stack([cols, rows, np.ones(len(rows))])
    return np.einsum("nk,nkc->nc", pixels, affines[pieces])


def warp_to_pose(
    frame: np.ndarray,
    robot: Robot,
    camera: Camera,
    state: tuple[np.ndarray, float],
    next_state: tuple[np.ndarray, float],
    appearance: RobotAppearance | None = None,
) -> np.ndarray:
    """``frame`` with its robot moved from ``state`` to ``next_state`` (each ``(joints, gripper)``).

    Args:
        frame: ``(H, W, 3)`` uint8 image seen through ``camera`` with the robot at ``state``.
        robot: The kinematic robot.
        camera: The frame's camera (its size must be the frame's).
        state: The robot's (commanded) joints and gripper openness in ``frame``.
        next_state: Those the robot is moved to.
        appearance: Where the robot pixels without a source in ``frame`` take their colours; pass the
            episode's to reuse its render across steps; by default a new one (a render when needed).

    Returns:
        ``(H, W, 3)`` uint8, the motion-compensated frame.
    """
    return warp_posed(
        frame,
        PosedRobot.at(robot, camera, *state),
        PosedRobot.at(robot, camera, *next_state),
        appearance or RobotAppearance(robot, camera),
    )


def warp_episode(
    frames: np.ndarray,
    robot: Robot,
    camera: Camera,
    joints: np.ndarray,
    gripper: np.ndarray,
    objects: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Every frame of an episode but the last moved to the next one's state: ``(T - 1, H, W, 3)`` uint8
    (each state posed once, one appearance render reused as in an imagined episode).

    With ``objects``, the episode's ``(T, >=3)`` object positions and ``(T, H, W)`` object masks, the object
    is moved too, to where it is in the next frame, as the imagined world moves it to where its object
    dynamics sends it (:func:`move_object`, the sprite cut from the first frame)."""
    posed = [PosedRobot.at(robot, camera, q, g) for q, g in zip(joints, gripper, strict=True)]
    appearance = RobotAppearance(robot, camera)
    sprite = None
    if objects is not None:
        positions, masks = np.asarray(objects[0], np.float64)[:, :3], objects[1]
        sprite = ObjectSprite.cut(frames[0], masks[0], positions[0], camera)
    warped = np.empty((max(len(frames) - 1, 0), *frames.shape[1:]), np.uint8)
    for t in range(len(warped)):
        warped[t] = warp_posed(frames[t], posed[t], posed[t + 1], appearance)
        if sprite is not None:
            warped[t] = move_object(warped[t], sprite, positions[t], positions[t + 1], posed[t + 1].ids)
    return warped


@dataclass(frozen=True, eq=False)
class ObjectSprite:
    """What the manipulated object looks like: its pixels in one frame, and where it stood then.

    Attributes:
        rgb: ``(H, W, 3)`` uint8, the frame's colours where ``alpha`` is set (zeros elsewhere).
        alpha: ``(H, W)`` float32, 1 on the object's pixels.
        position: ``(3,)`` the object's centre (m, world frame) in that frame.
        camera: The frame's camera.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    position: np.ndarray
    camera: Camera

    @classmethod
    def cut(cls, frame: np.ndarray, mask: np.ndarray, position: np.ndarray, camera: Camera) -> ObjectSprite:
        """The sprite of the object that ``mask`` (``(H, W)`` bool) marks in ``frame``, centred at
        ``position``."""
        mask = np.asarray(mask, bool)
        if mask.shape != frame.shape[:2]:
            raise ValueError(f"`mask` must be the frame's size {frame.shape[:2]}, got {mask.shape}")
        rgb = np.where(mask[..., None], frame, 0).astype(np.uint8)
        return cls(rgb, mask.astype(np.float32), np.asarray(position, np.float64)[:3].copy(), camera)

    def placement(self, position: np.ndarray) -> np.ndarray:
        """``(2, 3)`` the affine map of the sprite's pixels to the object at ``position``: its centre's
        projection moved there, the sprite scaled about it by the ratio of the two depths (a cube coming 2 cm
        nearer a camera 0.8 m away grows by 2.5 %)."""
        uv, depth = self.camera.project(np.stack([self.position, np.asarray(position, np.float64)[:3]]))
        scale = depth[0] / depth[1] if depth[1] > 0 else np.nan
        return np.array(
            [[scale, 0.0, uv[1, 0] - scale * uv[0, 0]], [0.0, scale, uv[1, 1] - scale * uv[0, 1]]]
        )


def move_object(
    frame: np.ndarray, sprite: ObjectSprite, at: np.ndarray, to: np.ndarray, robot_ids: np.ndarray
) -> np.ndarray:
    """``frame`` with the object moved on the table from ``at`` to ``to`` (centres, m).

    The object's old place (the sprite's silhouette moved to ``at``, grown by a pixel) is inpainted from
    the table around it, then the sprite is laid at ``to``: its pixels moved with the image of the
    object's centre and scaled by its change of depth (:meth:`ObjectSprite.placement`), sub-pixel,
    bilinear. Robot pixels (``robot_ids`` > 0, the robot already at its next pose in ``frame``) stay in
    front: the gripper that pushes hides the object's side it touches. An object that moves less than a
    quarter of a pixel leaves the frame as it is. The map is exact for a planar translation under a scaled
    orthographic camera; the rest of the perspective change and the object's rotation are the model's to
    draw.
    """
    import cv2

    old, new = sprite.placement(at), sprite.placement(to)
    if not (np.all(np.isfinite(old)) and np.all(np.isfinite(new))) or np.abs(new - old).max() < 0.25:
        return frame
    h, w = frame.shape[:2]

    def moved(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)

    kernel = np.ones((3, 3), np.uint8)
    was = cv2.dilate((moved(sprite.alpha, old) > 0.05).astype(np.uint8), kernel)
    out = cv2.inpaint(frame, was, _INPAINT_RADIUS, cv2.INPAINT_TELEA) if was.any() else frame.copy()
    alpha = moved(sprite.alpha, new)
    rgb = moved(sprite.rgb.astype(np.float32), new)
    covered = (alpha > 0.5) & (robot_ids == 0)
    out[covered] = np.clip(rgb[covered] / alpha[covered][:, None] + 0.5, 0, 255).astype(np.uint8)
    return out


def warp_posed(
    frame: np.ndarray, source: PosedRobot, target: PosedRobot, appearance: RobotAppearance
) -> np.ndarray:
    """``frame``, which shows the robot as ``source`` poses it, with its robot moved to ``target``'s pose; the
    robot pixels with nothing to move take ``appearance``'s colours."""
    import cv2  # OpenCV only when warping (the module stays importable without it)

    h, w = frame.shape[:2]
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or target.ids.shape != (h, w):
        raise ValueError(
            f"`frame` must be uint8 (H, W, 3) of the camera's size {target.ids.shape}, got {frame.dtype} "
            f"{frame.shape}"
        )
    rows, cols = np.nonzero(target.ids > 0)
    sources = _map_pixels(target, source, rows, cols)
    map_x, map_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x[rows, cols], map_y[rows, cols] = sources[:, 0], sources[:, 1]
    moved = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # the background behind the robot at ``source``, inpainted from the pixels around its (grown) silhouette
    # only, so that no robot colour bleeds into it; the moved robot is then laid over it
    kernel = np.ones((2 * _EDGE + 1,) * 2, np.uint8)
    was_robot = cv2.dilate((source.ids > 0).astype(np.uint8), kernel)
    warped = (
        cv2.inpaint(frame, was_robot, _INPAINT_RADIUS, cv2.INPAINT_TELEA) if was_robot.any() else frame.copy()
    )
    # a robot pixel whose source is outside the frame (the arm entering the view) or not the robot's at
    # ``source`` (a part newly turned to the camera) has nothing to move: it takes the robot's rendered colours
    # (replicated border pixels would look like arm, and marking them left the model to invent the hand:
    # experiment 12b against 12d); where the render has no robot, the inpainted background stays
    x, y = np.round(sources[:, 0]).astype(int), np.round(sources[:, 1]).astype(int)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    seen = inside.copy()
    seen[inside] = was_robot[y[inside], x[inside]] > 0
    warped[rows[seen], cols[seen]] = moved[rows[seen], cols[seen]]
    if not seen.all():
        r, c = rows[~seen], cols[~seen]
        rgb, drawn = appearance.colours(target, r, c)
        warped[r[drawn], c[drawn]] = rgb[drawn]
    return warped
