"""Simulator runs of an evaluation: a state-only simulator that renders only the frames the replays score."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import vap_env  # noqa: F401  (registers the envs)
from vap_env.evaluate.policy_runs import PolicyResult, run_sim
from vap_env.policies import as_policy, reads_images

FIELDS = ("success", "returns", "lengths", "final_distance", "object_displacement", "seeds")


def _env(obs_mode: str) -> gym.Env:
    return gym.make(
        "vap_env/PandaPush-Sim-v0", obs_mode=obs_mode, image_size=32, camera="random", max_episode_steps=30
    )


@pytest.mark.parametrize("spec", ["scripted:noise=0.3,hesitation=0.1", "random"])
def test_a_state_only_run_is_the_rendered_run_cut_to_its_first_frames(spec: str) -> None:
    both, state = _env("both"), _env("state")
    seeds = [7, 8]
    full_result, full = run_sim(both, spec, seeds, 30)
    result, cut = run_sim(state, spec, seeds, 30, frames=6)
    cut_both_result, cut_both = run_sim(both, spec, seeds, 30, frames=6)
    # the outcome describes whole episodes, to the last bit, however much was rendered or kept
    for other in (result, cut_both_result):
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(other, name), getattr(full_result, name))
    assert isinstance(result, PolicyResult) and full_result.lengths.min() > 5  # every episode is cut
    for whole, a, b in zip(full, cut, cut_both, strict=True):
        assert a.num_frames == b.num_frames == 6 and len(a.actions) == 5
        assert a.extra == b.extra == {"frames_of": whole.num_frames}
        assert a.success == whole.success and a.seed == whole.seed
        np.testing.assert_array_equal(
            np.asarray(a.camera.to_pybullet()), np.asarray(whole.camera.to_pybullet())
        )
        for field in ("frames", "robot_mask", "object_mask", "joints", "commanded_joints", "object_poses"):
            np.testing.assert_array_equal(getattr(a, field), getattr(whole, field)[:6])
            np.testing.assert_array_equal(getattr(b, field), getattr(whole, field)[:6])
        np.testing.assert_array_equal(a.actions, whole.actions[:5])
        np.testing.assert_array_equal(a.rewards, whole.rewards[:5])
        assert a.frames.std() > 0  # rendered, not left blank
    both.close()
    state.close()


def test_a_state_only_run_refuses_a_policy_that_may_read_images() -> None:
    state = _env("state")
    looks = as_policy(lambda obs: np.zeros(4, np.float32), state, name="looks")
    assert reads_images(looks) and not reads_images(as_policy("scripted", state))
    with pytest.raises(ValueError, match="policy 'looks': a state-only simulator records frames only for"):
        run_sim(state, looks, [0], 5, name="looks", frames=3)
    with pytest.raises(ValueError, match="only with `frames`"):
        run_sim(state, "scripted", [0], 5)
    state.close()
