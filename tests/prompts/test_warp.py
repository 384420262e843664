"""The motion-compensated frame (:mod:`vap_env.prompts.warp`) against PyBullet's render of the next pose."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import arm_view
from vap_env.camera import Camera
from vap_env.data import EpisodeDataset
from vap_env.kinematics import Robot
from vap_env.prompts.hull import piece_index_image
from vap_env.prompts.rectify import render_robot_rgb
from vap_env.prompts.warp import (
    ObjectSprite,
    PosedRobot,
    RobotAppearance,
    move_object,
    warp_episode,
    warp_posed,
    warp_to_pose,
)
from vap_env.recording import collect


def _scene(robot: Robot, q: np.ndarray, gripper: float, camera: Camera) -> np.ndarray:
    """The robot rendered by PyBullet over a textured background (gradient + stripes): a frame to warp."""
    rgb, mask = render_robot_rgb(robot, q, gripper, camera)
    v, u = np.mgrid[0 : camera.height, 0 : camera.width]
    background = np.stack(
        [60 + u * 120 // camera.width, 80 + v * 100 // camera.height, 90 + 40 * ((u // 6) % 2)], axis=-1
    ).astype(np.uint8)
    return np.where(mask[..., None], rgb, background)


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    err = ((a.astype(float) - b.astype(float)) ** 2)[where].mean()
    return float(10 * np.log10(255**2 / max(err, 1e-10)))  # equal images: 148 dB


@pytest.mark.parametrize("name", ["panda", "xarm6", "kuka_iiwa"])
def test_the_warped_frame_shows_the_robot_at_the_next_pose(name: str) -> None:
    robot = Robot(name)
    camera = Camera.from_spec(arm_view(robot.desc), 128, 128)
    rng = np.random.default_rng(1)
    gains, inpainted, left = [], [], []
    for _ in range(4):
        q = robot.home + rng.normal(0.0, 0.2, robot.num_joints)
        q_next = q + rng.normal(0.0, 0.04, robot.num_joints)  # a control step: a few centimetres
        frame, target = _scene(robot, q, 1.0, camera), _scene(robot, q_next, 1.0, camera)
        _, mask = render_robot_rgb(robot, q, 1.0, camera)
        _, mask_next = render_robot_rgb(robot, q_next, 1.0, camera)
        warped = warp_to_pose(frame, robot, camera, (q, 1.0), (q_next, 1.0))
        assert warped.shape == frame.shape and warped.dtype == np.uint8
        moved = mask | mask_next  # where the robot is in either frame: everything that changes
        gains.append(_psnr(warped, target, moved) - _psnr(frame, target, moved))
        # background the robot uncovers comes back (inpainted), not as the old arm
        uncovered = mask & ~mask_next
        inpainted.append(np.abs(warped[uncovered].astype(float) - target[uncovered]).mean())
        left.append(np.abs(frame[uncovered].astype(float) - target[uncovered]).mean())
        # far from the robot the frame is untouched
        far = ~_grow(mask | mask_next, 4)
        assert (warped[far] == frame[far]).all()
    # measured (three robots): 3.3-8.0 dB closer to the next frame than the frame itself on the robot's
    # pixels (mean 5.0-6.4; the few pixels with no source are the render's, which here drew the frames too),
    # the uncovered background 9-14 grey levels from the truth where the old arm left in place is 37-48 away
    assert np.mean(gains) > 4.0 and min(gains) > 2.0
    assert np.mean(inpainted) < 20.0 and np.mean(inpainted) < 0.5 * np.mean(left)


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * pixels + 1,) * 2, np.uint8)).astype(bool)


def test_warping_to_the_same_pose_keeps_the_robot_and_the_scene() -> None:
    robot = Robot("panda")
    camera = Camera.from_spec(robot.desc.camera, 96, 96)
    q = robot.home + 0.1
    frame = _scene(robot, q, 0.5, camera)
    warped = warp_to_pose(frame, robot, camera, (q, 0.5), (q, 0.5))
    posed = PosedRobot.at(robot, camera, q, 0.5)
    on_robot = posed.ids > 0
    # the identity map on the robot's pixels, the frame itself away from its silhouette's edge
    np.testing.assert_array_equal(warped[on_robot], frame[on_robot])
    np.testing.assert_array_equal(warped[~_grow(on_robot, 1)], frame[~_grow(on_robot, 1)])


def test_an_episode_is_warped_frame_by_frame_to_the_next_state() -> None:
    robot = Robot("panda")
    camera = Camera.from_spec(robot.desc.camera, 64, 64)
    joints = robot.home + np.linspace(0.0, 0.1, 3)[:, None]
    gripper = np.array([1.0, 0.8, 0.6])
    frames = np.stack([_scene(robot, q, g, camera) for q, g in zip(joints, gripper, strict=True)])
    warped = warp_episode(frames, robot, camera, joints, gripper)
    assert warped.shape == (2, 64, 64, 3)
    assert warp_episode(frames[:1], robot, camera, joints[:1], gripper[:1]).shape == (0, 64, 64, 3)
    for t in range(2):
        expected = warp_to_pose(
            frames[t], robot, camera, (joints[t], gripper[t]), (joints[t + 1], gripper[t + 1])
        )
        np.testing.assert_array_equal(warped[t], expected)


def test_a_frame_of_another_size_is_refused() -> None:
    robot = Robot("panda")
    camera = Camera.from_spec(robot.desc.camera, 64, 64)
    posed = PosedRobot.at(robot, camera, robot.home, 1.0)
    with pytest.raises(ValueError, match="camera's size"):
        warp_posed(np.zeros((32, 32, 3), np.uint8), posed, posed, RobotAppearance(robot, camera))


def test_robot_pixels_coming_into_view_are_drawn_from_the_robots_render() -> None:
    # one square piece moving 6 pixels down, from half above the frame: its rows that were above the frame
    # have nothing to copy and come from the render at the new pose (here: a red left half, no robot on the
    # right half, where the inpainted background stays); the rows that were in view are moved, not redrawn
    camera = Camera.from_spec(Robot("panda").desc.camera, 32, 32)
    square = np.array([[10.0, -10.0], [20.0, -10.0], [20.0, 6.0], [10.0, 6.0]])
    depth = np.ones(4)

    class Red(RobotAppearance):  # a render: red on the left half, no robot on the right half
        def colours(self, target, rows, cols):  # noqa: ANN001, ANN202
            self.renders += 1
            return np.tile(np.array([200, 10, 10], np.uint8), (len(rows), 1)), cols < 16

    appearance = Red(Robot("panda"), camera)

    def posed(dy: float) -> PosedRobot:
        pieces = [(square + [0.0, dy], depth)]
        return PosedRobot(pieces, piece_index_image(pieces, camera), np.zeros(7), 1.0)

    frame = np.full((32, 32, 3), 120, np.uint8)
    frame[:7, 10:21] = (
        np.arange(7, dtype=np.uint8)[:, None, None] * 20 + 30
    )  # the piece: a ramp down its rows
    warped = warp_posed(frame, posed(0.0), posed(6.0), appearance)
    assert appearance.renders == 1
    drawn = (warped == (200, 10, 10)).all(axis=-1)
    rows = np.nonzero(drawn.any(axis=1))[0]
    assert rows.min() == 0 and 4 <= rows.max() <= 6  # the rows whose source is above the frame
    assert not drawn[:, :9].any() and not drawn[:, 16:].any()  # only where the render shows the robot
    # elsewhere the inpainted background (120, within a few grey levels; the piece's ramp is 30, 50, ..., 150)
    assert np.abs(warped[: rows.max() + 1, 17:20].astype(int) - 120).max() <= 4
    np.testing.assert_array_equal(warped[8:12, 12:19], frame[2:6, 12:19])  # moved down by 6, not redrawn
    # nothing unseen, nothing rendered
    warp_posed(frame, posed(0.0), posed(0.0), appearance)
    assert appearance.renders == 1


def test_the_robots_look_is_rendered_once_for_several_steps_of_the_hand_coming_into_view() -> None:
    # the workspace framing of experiment 12: the hand comes down into the frame from above, 1.4 cm a step
    robot = Robot("panda")
    spec = dataclasses.replace(robot.desc.camera, target=(0.5, 0.0, 0.08), distance=0.8, pitch=-40.0)
    camera = Camera.from_spec(spec, 128, 128)
    joints = [robot.ik([0.5, 0.05, z]) for z in np.linspace(0.45, 0.12, 24)]
    frames = [_scene(robot, q, 1.0, camera) for q in joints]
    posed = [PosedRobot.at(robot, camera, q, 1.0) for q in joints]
    cached, fresh_renders, gaps, gains = RobotAppearance(robot, camera), 0, [], []
    for t in range(len(joints) - 1):
        fresh = RobotAppearance(robot, camera)  # a render whenever one is needed
        exact = warp_posed(frames[t], posed[t], posed[t + 1], fresh)
        reused = warp_posed(frames[t], posed[t], posed[t + 1], cached)
        fresh_renders += fresh.renders
        on_robot = posed[t + 1].ids > 0
        if not np.array_equal(exact[on_robot], frames[t + 1][on_robot]):
            gaps.append(_psnr(exact, frames[t + 1], on_robot) - _psnr(reused, frames[t + 1], on_robot))
        if not np.array_equal(frames[t][on_robot], frames[t + 1][on_robot]):  # the robot moved in view
            gains.append(_psnr(reused, frames[t + 1], on_robot) - _psnr(frames[t], frames[t + 1], on_robot))
    # measured: 20 of the 23 steps need colours; 8 renders serve them, 0.9 dB below a render at every step on
    # the robot's pixels on average (0-6 dB), where the warped frame is 7-13 dB closer to the next frame than
    # the frame itself once the hand is in view (0 before: a few edge pixels change)
    assert fresh_renders >= 18 and cached.renders <= fresh_renders // 2
    assert np.mean(gaps) < 1.5
    assert min(gains) >= 0.0 and np.median(gains) > 5.0


def _red_centroid(frame: np.ndarray) -> np.ndarray:
    red = (frame[..., 0] > 150) & (frame[..., 1] < 90) & (frame[..., 2] < 90)
    rows, cols = np.nonzero(red)
    return np.array([cols.mean(), rows.mean()])


def test_the_object_is_moved_on_the_table_behind_the_robot() -> None:
    robot = Robot("panda")
    camera = Camera.from_spec(robot.desc.camera, 64, 64)
    robot.close()
    at, to = np.array([0.5, 0.0, 0.025]), np.array([0.56, 0.03, 0.025])
    (u, v), _ = camera.project(at)
    rows, cols = np.mgrid[0:64, 0:64]
    mask = (np.abs(cols - u) <= 2) & (np.abs(rows - v) <= 2)
    frame = np.full((64, 64, 3), 120, np.uint8)
    frame[mask] = (200, 30, 30)
    sprite = ObjectSprite.cut(frame, mask, at, camera)
    no_robot = np.zeros((64, 64), np.int32)
    moved = move_object(frame, sprite, at, to, no_robot)
    shift = camera.project(to)[0] - camera.project(at)[0]
    (_, near), (_, far) = camera.project(at), camera.project(to)
    assert sprite.placement(to)[0, 0] == pytest.approx(near / far) and sprite.placement(at)[0, 0] == 1.0
    assert np.abs(shift).max() > 2  # the test moves it visibly
    np.testing.assert_allclose(_red_centroid(moved), _red_centroid(frame) + shift, atol=0.5)
    assert (np.abs(moved[mask & ~(moved[..., 0] > 150)].astype(int) - 120) <= 2).all()  # old place: table
    red = (moved[..., 0] > 150) & (moved[..., 1] < 90)
    assert abs(int(red.sum()) - int(mask.sum())) <= 0.2 * mask.sum()  # one object: moved, not copied
    # the robot in front keeps its pixels where the object goes
    ids = np.zeros((64, 64), np.int32)
    ids[:, int(round(u + shift[0]))] = 3
    frame_with_arm = frame.copy()
    frame_with_arm[ids > 0] = (10, 200, 10)
    behind = move_object(frame_with_arm, sprite, at, to, ids)
    np.testing.assert_array_equal(behind[ids > 0], frame_with_arm[ids > 0])
    # an object that does not move leaves the frame as it is
    assert move_object(frame, sprite, at, at + 1e-5, no_robot) is frame
    with pytest.raises(ValueError, match="`mask` must be the frame's size"):
        ObjectSprite.cut(frame, mask[:32], at, camera)


def test_an_episode_with_its_object_warps_the_cube_to_the_next_frame(tmp_path: Path) -> None:
    collect("panda", "push", 1, "scripted", tmp_path, image_size=128, seed=3, progress=False)
    episode = EpisodeDataset(tmp_path)[0]
    robot = Robot("panda")
    args = (episode.frames, robot, episode.camera, episode.commanded_joints, episode.commanded_gripper)
    plain = warp_episode(*args)
    with_object = warp_episode(*args, objects=(episode.object_poses, episode.object_mask))
    robot.close()
    steps = np.linalg.norm(np.diff(episode.object_poses[:, :2], axis=0), axis=1)
    pushed, still = np.nonzero(steps > 0.008)[0], np.nonzero(steps < 1e-5)[0]
    assert len(pushed) >= 4 and len(still) >= 4
    for t in still:
        np.testing.assert_array_equal(with_object[t], plain[t])
    # where the cube is in either frame, the warped frame is nearer the next one with the cube moved
    masks = episode.object_mask
    gain = [
        _psnr(with_object[t], episode.frames[t + 1], masks[t] | masks[t + 1])
        - _psnr(plain[t], episode.frames[t + 1], masks[t] | masks[t + 1])
        for t in pushed
    ]
    assert np.mean(gain) > 0.5, gain
