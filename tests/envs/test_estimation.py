"""Task-state estimation on simulator frames: the cube detector's accuracy, occlusion, the last estimate."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vap_env.envs.estimation import CubeDetector, TaskStateEstimate, estimate_task_state
from vap_env.policies import make_policy
from vap_env.sim.env import SimEnv


def _push_frames(camera: str, seeds: range, every: int = 2) -> list[tuple[np.ndarray, object, np.ndarray]]:
    """(frame, camera, true cube position) every ``every`` steps of noisy scripted pushes, 64x64.

    The pushes put the gripper in front of the cube in many frames, so partly hidden cubes are included.
    """
    env = SimEnv(robot="panda", task="push", obs_mode="state", image_size=64, camera=camera)
    samples = []
    try:
        for seed in seeds:
            policy = make_policy(f"scripted:noise={0.1 * (seed % 3)},seed={seed}", env)
            obs, _ = env.reset(seed=seed)
            policy.reset(seed=seed)
            for t in range(45):
                if t % every == 0:
                    samples.append((env.frame().rgb.copy(), env.camera, env.task.get_object_pose()[:3]))
                obs, _, terminated, _, _ = env.step(policy.act(obs))
                if terminated:
                    break
    finally:
        env.close()
    return samples


@pytest.fixture(scope="module")
def sim_frames() -> dict[str, list]:
    return {camera: _push_frames(camera, range(5)) for camera in ("fixed", "random")}


@pytest.mark.parametrize(("camera", "fit_gain"), [("fixed", 0.5), ("random", 1.0)])
def test_cube_position_error_below_1cm_at_64px(
    sim_frames: dict[str, list], camera: str, fit_gain: float
) -> None:
    """Measured on these frames under the Panda's workspace camera: mean error 3.5 mm (fixed camera, 70 frames)
    and 1.6 mm (random cameras, 73); on partly hidden cubes the fit gives 4.0 mm where the centroid gives 14 mm
    (fixed camera, 37 frames; 1.4 vs 5.2 mm with random cameras, which see the pushing gripper from more
    sides and hide the cube partly in 7 frames). The cube is entirely hidden in 8 of 78 fixed-camera
    frames."""
    detector = CubeDetector()
    errors, fitted, centroid_errors, missed = [], [], [], 0
    for frame, cam, truth in sim_frames[camera]:
        found = detector.detect(frame, cam)
        if found is None:  # the cube entirely behind the gripper
            missed += 1
            continue
        errors.append(np.linalg.norm(found.position[:2] - truth[:2]))
        assert found.position[2] == pytest.approx(0.025)
        if found.fitted:
            rows, cols = np.nonzero(detector.cube_mask(frame))
            centroid = cam.unproject_to_plane(np.array([cols.mean(), rows.mean()]), 0.025)
            fitted.append(errors[-1])
            centroid_errors.append(np.linalg.norm(centroid[:2] - truth[:2]))
    errors = np.array(errors)
    assert len(errors) >= 50 and missed <= 0.15 * len(sim_frames[camera])
    assert errors.mean() < 0.006, errors.mean()
    assert np.median(errors) < 0.004
    assert errors.max() < 0.03
    # partly hidden cubes are common while pushing; the silhouette fit beats the plain centroid on them
    assert len(fitted) >= 5
    assert np.mean(fitted) < 0.008 and np.mean(fitted) < fit_gain * np.mean(centroid_errors)


def test_red_mask_is_exactly_the_cube() -> None:
    env = SimEnv(robot="panda", task="push", obs_mode="state", image_size=64, camera="random")
    detector = CubeDetector()
    try:
        for seed in range(4):
            env.reset(seed=seed)
            frame = env.frame()
            assert np.array_equal(detector.cube_mask(frame.rgb), frame.object_mask)
    finally:
        env.close()


def test_hidden_cube_keeps_the_last_estimate(sim_frames: dict[str, list]) -> None:
    frame, camera, truth = sim_frames["fixed"][0]
    ee, goal = np.array([0.4, 0.0, 0.3]), np.array([0.5, 0.1, 0.025])
    first = estimate_task_state("push", frame, camera, ee, goal)
    assert first.object_visible and np.linalg.norm(first.object_position[:2] - truth[:2]) < 0.01
    np.testing.assert_array_equal(first.achieved_goal, first.object_position)
    hidden = frame.copy()
    hidden[CubeDetector().red_mask(frame)] = (90, 90, 95)  # painted over, as an occluding arm would
    kept = estimate_task_state("push", hidden, camera, ee, goal, previous=first)
    assert not kept.object_visible
    np.testing.assert_array_equal(kept.object_position, first.object_position)
    fallback = estimate_task_state("push", hidden, camera, ee, goal, fallback_object_position=goal)
    np.testing.assert_array_equal(fallback.object_position, goal)
    with pytest.raises(ValueError, match="no previous estimate"):
        estimate_task_state("push", hidden, camera, ee, goal)
    # a red blob outside the region where a cube can be is not the cube
    away = (np.array([2.0, 2.0, 0.0]), np.array([3.0, 3.0, 1.0]))
    assert CubeDetector().detect(frame, camera, region=away) is None


def _paint_out_cube(frame: np.ndarray) -> np.ndarray:
    """A copy of ``frame`` with the cube painted in the frame's median colour (the table's)."""
    empty = frame.copy()
    red = CubeDetector().red_mask(frame)
    empty[red] = np.median(frame[~red], axis=0).astype(np.uint8)
    return empty


def test_noise_is_not_the_cube(sim_frames: dict[str, list]) -> None:
    """An untrained world model makes noise frames; the colour threshold finds red in every one of these (the
    detector found all of them before its plausibility check), but no 5 cm cube could make those blobs."""
    frame, camera, _ = sim_frames["fixed"][0]
    detector, rng = CubeDetector(), np.random.default_rng(0)
    gaussian = [np.clip(rng.normal(128, 60, frame.shape), 0, 255).astype(np.uint8) for _ in range(40)]
    speckled = []
    for i in range(40):  # salt-and-pepper with red grains, on a grey frame or on the scene without its cube
        speckle = np.full_like(frame, 150) if i % 2 else _paint_out_cube(sim_frames["fixed"][i][0])
        grains = rng.random(frame.shape[:2])
        speckle[grains < 0.03], speckle[grains > 0.97] = (0, 0, 0), (255, 255, 255)
        speckle[(grains > 0.5) & (grains < 0.55)] = (220, 20, 20)
        speckled.append(speckle)
    for noise in gaussian + speckled:
        assert detector.cube_mask(noise).sum() >= detector.min_pixels
        assert detector.detect(noise, camera) is None
    # in an episode, a noise frame keeps the last estimate
    ee, goal = np.array([0.4, 0.0, 0.3]), np.array([0.5, 0.1, 0.025])
    first = estimate_task_state("push", frame, camera, ee, goal)
    kept = estimate_task_state("push", gaussian[0], camera, ee, goal, previous=first)
    assert first.object_visible and not kept.object_visible
    np.testing.assert_array_equal(kept.object_position, first.object_position)


def test_only_a_cube_sized_blob_is_the_cube(sim_frames: dict[str, list]) -> None:
    """A red hexagon where a cube's silhouette would be is found there; the same blob at twice the width
    (4x the area) is not."""
    frame, camera, truth = sim_frames["fixed"][0]
    detector = CubeDetector()
    corners = truth[:2] + 0.025 * np.array([[x, y] for x in (-1, 1) for y in (-1, 1)])
    corners = np.array([[x, y, z] for x, y in corners for z in (0.0, 0.05)])
    outline = cv2.convexHull(camera.project(corners)[0].astype(np.float32))[:, 0]
    for scale, found in ((1.0, True), (2.0, False)):
        blob = outline.mean(axis=0) + scale * (outline - outline.mean(axis=0))
        image = _paint_out_cube(frame)
        cv2.fillConvexPoly(image, np.round(blob).astype(np.int32), (200, 30, 30))
        detection = detector.detect(image, camera)
        assert (detection is not None) == found, scale
        if found:
            assert np.linalg.norm(detection.position[:2] - truth[:2]) < 0.01
            assert 0.8 < detection.visible_fraction < 1.3
        else:
            assert detector.cube_mask(image).sum() > 3 * detector.cube_mask(frame).sum()


def test_reach_state_is_the_kinematic_tcp(sim_frames: dict[str, list]) -> None:
    frame, camera, _ = sim_frames["fixed"][0]
    ee, goal = np.array([0.4, 0.0, 0.3]), np.array([0.5, 0.1, 0.2])
    state = estimate_task_state("reach", frame, camera, ee, goal)
    assert isinstance(state, TaskStateEstimate) and state.object_position is None and not state.object_visible
    np.testing.assert_array_equal(state.achieved_goal, ee)
    with pytest.raises(ValueError, match="unknown task 'stack'; known tasks: reach, push"):
        estimate_task_state("stack", frame, camera, ee, goal)
    with pytest.raises(ValueError, match="does not fit"):
        CubeDetector().detect(frame[:32], camera)
    with pytest.raises(ValueError, match="`min_visible_fraction` and `max_visible_fraction`"):
        CubeDetector(min_visible_fraction=1.5, max_visible_fraction=1.0)
    with pytest.raises(ValueError, match="`min_solidity` and `max_residual`"):
        CubeDetector(max_residual=-0.1)
