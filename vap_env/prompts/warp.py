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
frame; everything else is the frame unchanged (the cube the arm is about to push is the model's to move). A
robot pixel with nothing to move there (its source outside the frame: the arm coming into view; or not the
robot's: a part newly turned to the camera) is drawn from the robot's own render at the next state
(``PosedRobot.draw``: PyBullet's TinyRenderer, the URDF's visual meshes and colours, only for frames that
have such pixels); where that render shows no robot (the convex pieces and the visual meshes differ at the
edges), the inpainted background.

Measured on the 30 held-out 128x128 episodes of experiment 12 (1305 steps, workspace camera): 5.1 % of the
robot's pixels have no source; elsewhere the warped frame is 32.1 dB from the next frame where repeating the
frame is 28.5 (the robot's pixels: 23.7 against 19.2 dB). About 5 ms a frame on one core, plus ~25 ms for the
render of a 128x128 frame that needs it. Drawing those pixels instead of marking them (experiment 12d against
12b) raised a fine-tuned model's robot ST-IoU at horizon 8 from 0.75 to 0.83: at the workspace framing the hand
comes into view from above during the approach, and the render is the only place its appearance comes from.
The render draws the robot as the simulator does; on a real robot it is a likeness.

Written here: no chosen package warps an image by per-link rigid motions; OpenCV's ``remap`` and
``inpaint`` do the pixel work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vap_env.camera import Camera
from vap_env.kinematics import Robot
from vap_env.prompts.hull import _PIXEL_OFFSET, piece_index_image, posed_pieces
from vap_env.prompts.rectify import render_robot_rgb

_INPAINT_RADIUS = 3  # pixels of background the inpainting reads around a disoccluded region
_EDGE = 1  # pixels the robot's silhouette at the frame's state is grown by (the hull render's edge error)


@dataclass(frozen=True, eq=False)
class PosedRobot:
    """The robot's convex pieces at one state, projected (:func:`~vap_env.prompts.hull.posed_pieces`), which
    piece is seen at each pixel (:func:`~vap_env.prompts.hull.piece_index_image`), and how to draw the robot
    there (``draw``: its ``(H, W, 3)`` uint8 RGB and ``(H, W)`` bool mask, asked for only when a warp needs
    it; :meth:`at` makes it PyBullet's render of the robot's visual meshes)."""

    pieces: list[tuple[np.ndarray, np.ndarray | None]]
    ids: np.ndarray
    draw: Callable[[], tuple[np.ndarray, np.ndarray]] = field(repr=False)

    @classmethod
    def at(cls, robot: Robot, camera: Camera, joints: np.ndarray, gripper: float) -> PosedRobot:
        pieces = posed_pieces(robot, joints, float(gripper), camera)
        joints = np.array(joints, dtype=float)  # a copy: the render may come later, after the caller moved on

        def draw() -> tuple[np.ndarray, np.ndarray]:
            return render_robot_rgb(robot, joints, float(gripper), camera)

        return cls(pieces, piece_index_image(pieces, camera), draw)


def warp_to_pose(
    frame: np.ndarray,
    robot: Robot,
    camera: Camera,
    state: tuple[np.ndarray, float],
    next_state: tuple[np.ndarray, float],
) -> np.ndarray:
    """``frame`` with its robot moved from ``state`` to ``next_state`` (each ``(joints, gripper)``).

    Args:
        frame: ``(H, W, 3)`` uint8 image seen through ``camera`` with the robot at ``state``.
        robot: The kinematic robot.
        camera: The frame's camera (its size must be the frame's).
        state: The robot's (commanded) joints and gripper openness in ``frame``.
        next_state: Those the robot is moved to.

    Returns:
        ``(H, W, 3)`` uint8, the motion-compensated frame.
    """
    return warp_posed(frame, PosedRobot.at(robot, camera, *state), PosedRobot.at(robot, camera, *next_state))


def warp_episode(
    frames: np.ndarray, robot: Robot, camera: Camera, joints: np.ndarray, gripper: np.ndarray
) -> np.ndarray:
    """Every frame of an episode but the last moved to the next one's state: ``(T - 1, H, W, 3)`` uint8
    (each state posed once)."""
    posed = [PosedRobot.at(robot, camera, q, g) for q, g in zip(joints, gripper, strict=True)]
    warped = np.empty((max(len(frames) - 1, 0), *frames.shape[1:]), np.uint8)
    for t in range(len(warped)):
        warped[t] = warp_posed(frames[t], posed[t], posed[t + 1])
    return warped


def warp_posed(frame: np.ndarray, source: PosedRobot, target: PosedRobot) -> np.ndarray:
    """``frame``, which shows the robot as ``source`` poses it, with its robot moved to ``target``'s pose."""
    import cv2  # OpenCV only when warping (the module stays importable without it)

    h, w = frame.shape[:2]
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or target.ids.shape != (h, w):
        raise ValueError(
            f"`frame` must be uint8 (H, W, 3) of the camera's size {target.ids.shape}, got {frame.dtype} "
            f"{frame.shape}"
        )
    # per piece, the affine map (u, v, 1) -> (u, v) from its pixels at ``target`` to those at ``source``, in
    # the render's pixel grid; row 0 (no piece) and pieces not drawn at ``source`` keep pixels where they are
    affines = np.tile(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), (len(target.pieces) + 1, 1, 1))
    for k in np.unique(target.ids[target.ids > 0]) - 1:
        (uv_after, _), (uv_before, z_before) = target.pieces[k], source.pieces[k]
        if z_before is None:  # the piece was through the near plane: nothing of it to move
            continue
        design = np.column_stack([uv_after + _PIXEL_OFFSET, np.ones(len(uv_after))])
        affines[k + 1], *_ = np.linalg.lstsq(design, uv_before + _PIXEL_OFFSET, rcond=None)
    is_robot = target.ids > 0
    rows, cols = np.nonzero(is_robot)
    pixels = np.column_stack([cols, rows, np.ones(len(rows))])
    sources = np.einsum("nk,nkc->nc", pixels, affines[target.ids[rows, cols]])
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
    # ``source`` (a part newly turned to the camera) has nothing to move: it is drawn from the robot's render at
    # ``target`` (replicated border pixels would look like arm, and marking them left the model to invent the
    # hand: experiment 12b against 12d); where the render has no robot, the inpainted background stays
    x, y = np.round(sources[:, 0]).astype(int), np.round(sources[:, 1]).astype(int)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    seen = inside.copy()
    seen[inside] = was_robot[y[inside], x[inside]] > 0
    warped[rows[seen], cols[seen]] = moved[rows[seen], cols[seen]]
    if not seen.all():
        rgb, drawn = target.draw()
        r, c = rows[~seen], cols[~seen]
        keep = drawn[r, c]
        warped[r[keep], c[keep]] = rgb[r[keep], c[keep]]
    return warped
