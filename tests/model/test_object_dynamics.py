"""The learned object dynamics: it learns where pushes send the cube, from the commanded kinematics alone."""

from pathlib import Path

import numpy as np
import pytest
import torch

from vap_env.data import EpisodeDataset
from vap_env.kinematics import Robot
from vap_env.model.object_dynamics import (
    ObjectDynamics,
    ObjectDynamicsConfig,
    commanded_tcps,
    features,
    fit_object_dynamics,
    transitions,
)
from vap_env.recording import collect


@pytest.fixture(scope="module")
def pushes(tmp_path_factory: pytest.TempPathFactory) -> list:
    """Twelve scripted pushes (noisy, so the TCP meets the cube at different places) at 32x32."""
    out = tmp_path_factory.mktemp("pushes") / "panda_push"
    collect("panda", "push", 12, "scripted:noise=0.3", out, image_size=32, progress=False)
    return list(EpisodeDataset(out))


def test_features_are_relative_to_the_object_and_scaled() -> None:
    x = features(
        np.array([[0.5, 0.1]]), np.array([[0.45, 0.1, 0.02]]), np.array([[0.46, 0.1, 0.03]]), np.ones(1)
    )
    np.testing.assert_allclose(x[0], [-0.5, 0.0, 0.5, 0.0, 0.2, 0.3, 1.0], atol=1e-6)
    # the same scene moved on the table: the same inputs (the model sees the TCP from the cube)
    moved = features(
        np.array([[0.6, -0.2]]), np.array([[0.55, -0.2, 0.02]]), np.array([[0.56, -0.2, 0.03]]), np.ones(1)
    )
    np.testing.assert_allclose(moved, x, atol=1e-6)


def test_transitions_are_the_recorded_object_motion(pushes: list) -> None:
    robot = Robot("panda")
    tcps = [commanded_tcps(e, robot) for e in pushes[:2]]
    robot.close()
    x, y, moving = transitions(pushes[:2], tcps)
    assert len(x) == len(y) == len(moving) == sum(len(e.actions) for e in pushes[:2])
    step = np.diff(pushes[0].object_poses[:, :2], axis=0)
    np.testing.assert_allclose(y[: len(step)] / 50.0, step, atol=1e-6)
    assert moving[: len(step)].tolist() == (np.linalg.norm(step, axis=1) >= 0.002).tolist()
    # the commanded TCP is near the achieved one (the arm tracks its commands within a few cm)
    assert np.abs(tcps[0] - pushes[0].ee_position).max() < 0.05


def test_it_learns_where_held_out_pushes_send_the_cube_and_round_trips(pushes: list, tmp_path: Path) -> None:
    config = ObjectDynamicsConfig(steps=600, hidden=64, layers=2)
    model, info = fit_object_dynamics(pushes[:10], pushes[10:], config)
    # one step ahead on the held-out transitions where the cube moves: well under predicting no motion
    assert info["heldout_error_mm"] < 0.6 * info["heldout_still_mm"], info
    model.save(tmp_path)
    assert ObjectDynamics.saved_in(tmp_path) and not ObjectDynamics.saved_in(tmp_path / "none")
    loaded = ObjectDynamics.load(tmp_path)
    e = pushes[10]
    robot = Robot("panda")
    tcp = commanded_tcps(e, robot)
    robot.close()
    xy = e.object_poses[:-1, :2]
    next_xy = loaded.step(xy, tcp[:-1], tcp[1:], e.commanded_gripper[1:])
    np.testing.assert_allclose(next_xy, model.step(xy, tcp[:-1], tcp[1:], e.commanded_gripper[1:]))
    # far from the TCP the cube stays put
    far = loaded.step(xy + 0.3, tcp[:-1], tcp[1:], e.commanded_gripper[1:])
    assert np.abs(far - (xy + 0.3)).max() < 0.004


def test_a_dataset_without_object_motion_is_refused(pushes: list) -> None:
    still = []
    for e in pushes[:2]:
        e = e.starting_at(0)
        e.object_poses = np.repeat(e.object_poses[:1], len(e.object_poses), axis=0)
        still.append(e)
    with pytest.raises(ValueError, match="the object never moves"):
        fit_object_dynamics(still, still, ObjectDynamicsConfig(steps=1))
    with pytest.raises(ValueError, match="`hidden` must be >= 1"):
        ObjectDynamicsConfig(hidden=0)
    torch.manual_seed(0)
