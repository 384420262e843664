"""Open-loop replay scoring: the imagined cube's centre error against the simulator's, beside the baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vap_env.data import EpisodeDataset
from vap_env.envs.estimation import CubeDetector
from vap_env.evaluate.replay import Replay, object_centre_errors, travel_along_push


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
    # along the push: the perfect model's cube makes the whole push and stays on its line, the frozen none
    step = len(pushed.actions)
    perfect_travel, frozen_travel = travel_along_push(perfect, step), travel_along_push(frozen, step)
    assert perfect_travel["true_m"] == pytest.approx(truth[-1])
    assert (
        perfect_travel["along_m"] == pytest.approx(truth[-1], abs=0.015) and perfect_travel["off_m"] < 0.015
    )
    assert frozen_travel["along_m"] == 0.0 and frozen_travel["off_m"] == 0.0


def test_travel_across_the_push_is_told_from_travel_along_it() -> None:
    true_track = np.array([[0.0, 0.0], [0.1, 0.0]])
    sideways = {"true_track": true_track, "track": np.array([[0.5, 0.5], [0.53, 0.54]])}
    travel = travel_along_push(sideways, 1)
    assert travel == pytest.approx({"true_m": 0.1, "along_m": 0.03, "off_m": 0.04})
    backwards = {"true_track": true_track, "track": np.array([[0.0, 0.0], [-0.02, 0.0]])}
    assert travel_along_push(backwards, 1)["along_m"] == pytest.approx(-0.02)


def test_a_lost_cube_keeps_its_last_found_place(pushed) -> None:
    frames = pushed.frames[1:].copy()
    frames[5:] = frames[5:, :1, :1]  # from step 6 on, an empty image: the cube is nowhere
    errors = object_centre_errors(Replay(pushed, frames, pushed.frames, True, 0.0), CubeDetector())
    assert not errors["found"][5:].any() and errors["found"][:5].all()
    true = pushed.object_poses[:, :2]
    last_seen = np.linalg.norm(true[6:] - true[5], axis=1)  # held at step 5's detection
    np.testing.assert_allclose(errors["model"][5:], last_seen, atol=0.015)


def test_a_replay_can_start_mid_episode_from_its_recorded_frame(tmp_path: Path, tiny_model_dir: Path) -> None:
    from vap_env.description import load_description
    from vap_env.envs.imagined_world import ImaginedWorld
    from vap_env.evaluate.replay import open_loop_replays
    from vap_env.kinematics import Robot
    from vap_env.prompts import ActionPrompter
    from vap_env.recording import collect

    collect("panda", "push", 1, "scripted", tmp_path, image_size=32, max_steps=20, seed=3, progress=False)
    episode = EpisodeDataset(tmp_path)[0]
    window = episode.starting_at(8)
    assert window.num_frames == episode.num_frames - 8 and len(window.actions) == len(episode.actions) - 8
    np.testing.assert_array_equal(window.frames, episode.frames[8:])
    np.testing.assert_array_equal(window.object_poses, episode.object_poses[8:])
    np.testing.assert_array_equal(window.actions, episode.actions[8:])
    np.testing.assert_array_equal(window.goal, episode.goal)
    assert window.extra["start_step"] == 8 and window.starting_at(2).extra["start_step"] == 10
    last = window.num_frames - 1
    with pytest.raises(ValueError, match=rf"`step` must be in \[0, {last}\], got {last + 1}"):
        window.starting_at(last + 1)

    world = ImaginedWorld(tiny_model_dir, robot="panda", task="push", camera=window.camera, obs_mode="image",
                          reset_mode="image", action_mode=episode.action_mode)  # fmt: skip
    try:
        (replay,) = open_loop_replays(world, [window], horizon=4)
    finally:
        world.close()
    assert replay.start_matches and replay.imagined.shape == (4, 32, 32, 3)
    # imagination starts from frame 8's command: its prompt, then the recorded commands step by step
    prompter = ActionPrompter(Robot(load_description("panda")), window.camera)
    expected = prompter.render(window.commanded_joints[0], float(window.commanded_gripper[0]))
    np.testing.assert_array_equal(replay.prompts[0], expected)
    assert replay.command_error < 1e-3
