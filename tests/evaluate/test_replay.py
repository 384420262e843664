"""Open-loop replay scoring: the imagined cube's centre error against the simulator's, beside the baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vap_env.data import EpisodeDataset
from vap_env.envs.estimation import CubeDetector
from vap_env.evaluate.replay import Replay, object_centre_errors


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory):
    """A recorded 64x64 expert push episode whose cube moves (seed 3: pushed ~6 cm within 40 steps)."""
    from vap_env.recording import collect

    out = tmp_path_factory.mktemp("push")
    collect("panda", "push", 1, "scripted", Path(out), image_size=64, max_steps=40, seed=3, progress=False)
    episode = EpisodeDataset(out)[0]
    moved = np.linalg.norm(episode.object_poses[-1, :2] - episode.object_poses[0, :2])
    assert moved > 0.03, f"the fixture's cube moved only {moved:.3f} m"
    return episode


def test_centre_errors_of_a_perfect_model_and_of_a_frozen_one(pushed) -> None:
    detector, n = CubeDetector(), len(pushed.actions)
    perfect = object_centre_errors(Replay(pushed, pushed.frames[1:], pushed.frames, True, 0.0), detector)
    frozen_frames = np.repeat(pushed.frames[:1], n, axis=0)
    frozen = object_centre_errors(Replay(pushed, frozen_frames, pushed.frames, True, 0.0), detector)
    truth = np.linalg.norm(pushed.object_poses[1:, :2] - pushed.object_poses[0, :2], axis=1)
    np.testing.assert_allclose(perfect["displacement"], truth)
    # A model that shows the simulator's frames errs by the detector's own error only (under 1.5 cm here) ...
    assert perfect["model"].max() < 0.015 and perfect["found"].mean() > 0.9
    # ... one that repeats the first frame is the baseline, which errs by how far the cube went.
    np.testing.assert_array_equal(frozen["model"], frozen["baseline"])
    np.testing.assert_array_equal(perfect["baseline"], frozen["baseline"])
    assert frozen["baseline"][-1] == pytest.approx(truth[-1], abs=0.015)
    assert frozen["baseline"][-1] > 0.03 > perfect["model"][-1] + 0.015


def test_a_lost_cube_keeps_its_last_found_place(pushed) -> None:
    frames = pushed.frames[1:].copy()
    frames[5:] = frames[5:, :1, :1]  # from step 6 on, an empty image: the cube is nowhere
    errors = object_centre_errors(Replay(pushed, frames, pushed.frames, True, 0.0), CubeDetector())
    assert not errors["found"][5:].any() and errors["found"][:5].all()
    true = pushed.object_poses[:, :2]
    last_seen = np.linalg.norm(true[6:] - true[5], axis=1)  # held at step 5's detection
    np.testing.assert_allclose(errors["model"][5:], last_seen, atol=0.015)
