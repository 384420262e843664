"""Task-state estimation on simulator frames: the cube detector's accuracy, occlusion, the last estimate."""

from __future__ import annotations

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
    """Measured on these frames: mean error 3.8 mm (fixed camera, 70 frames) and 2.5 mm (random cameras, 73);
    on partly hidden cubes the fit gives 4.4 mm where the centroid gives 13 mm (fixed camera; 3.5 vs 4.3 mm
    with random cameras, which see the pushing gripper from more sides). The cube is entirely hidden in 8 of
    78 fixed-camera frames."""
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
    assert len(fitted) >= 10
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


def test_reach_state_is_the_kinematic_tcp(sim_frames: dict[str, list]) -> None:
    frame, camera, _ = sim_frames["fixed"][0]
    ee, goal = np.array([0.4, 0.0, 0.3]), np.array([0.5, 0.1, 0.2])
    state = estimate_task_state("reach", frame, camera, ee, goal)
    assert isinstance(state, TaskStateEstimate) and state.object_position is None and not state.object_visible
    np.testing.assert_array_equal(state.achieved_goal, ee)
    with pytest.raises(ValueError, match="'push' or 'reach'"):
        estimate_task_state("stack", frame, camera, ee, goal)
    with pytest.raises(ValueError, match="does not fit"):
        CubeDetector().detect(frame[:32], camera)
