"""WorldModelVectorEnv: equal to N single envs, same-step autoreset, reset masks, make_vec."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from vap_env.envs.vector_env import WorldModelVectorEnv
from vap_env.envs.world_model_env import WorldModelEnv
from vap_env.model import ActionToVideoModel

# Batched and single generate calls run the same float32 arithmetic in different matrix-kernel blockings, so
# frames may differ by one rounding step of uint8 (measured: at most 1 grey level, on a few pixels a step).
FRAME_ATOL = 2
# A flipped pixel at the cube's edge moves the estimated cube by a fraction of a millimetre.
REWARD_ATOL = 5e-3


def test_sampler_takes_one_generator_per_row(model: ActionToVideoModel) -> None:
    """A list of generators seeds each batch row on its own, as diffusers pipelines do: a row of a batch
    equals the same row generated alone."""
    g = torch.Generator().manual_seed(0)
    context = torch.rand(3, 1, 3, 64, 64, generator=g) * 2 - 1
    prompts = torch.rand(3, 2, 3, 64, 64, generator=g) * 2 - 1
    batch = model.generate(context, prompts, generator=[torch.Generator().manual_seed(s) for s in (5, 6, 7)])
    alone = model.generate(context[1:2], prompts[1:2], generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(batch[1:2], alone, atol=1e-4, rtol=0)
    assert (batch[0] - batch[1]).abs().mean() > 0.1
    with pytest.raises(ValueError, match=r"one per batch row \(3\), got 2"):
        model.generate(context, prompts, generator=[torch.Generator(), torch.Generator()])


def test_vector_env_equals_single_envs(model: ActionToVideoModel) -> None:
    """Sub-env i is a single env reset with seed + i, through a time-limit autoreset too (the new episode's
    seed comes from the sub-env's own generator, as a single env's ``reset()`` draws it)."""
    n, seed, limit = 3, 10, 3
    venv = WorldModelVectorEnv(
        model=model, num_envs=n, max_episode_steps=limit, task="push", obs_mode="both", camera="random"
    )
    singles = [WorldModelEnv(model=model, task="push", obs_mode="both", camera="random") for _ in range(n)]
    obs, infos = venv.reset(seed=seed)
    for i, env in enumerate(singles):
        single_obs, single_info = env.reset(seed=seed + i)
        np.testing.assert_array_equal(obs["image"][i], single_obs["image"])
        np.testing.assert_array_equal(obs["state"][i], single_obs["state"])
        np.testing.assert_array_equal(infos["prompt"][i], single_info["prompt"])
    actions = np.random.default_rng(0).uniform(-1, 1, (5, n, 4)).astype(np.float32)
    for t, batch in enumerate(actions, start=1):
        obs, rewards, terminated, truncated, infos = venv.step(batch)
        assert not terminated.any()  # the untrained model never pushes the cube onto the goal
        assert truncated.all() == (t == limit)
        for i, env in enumerate(singles):
            single_obs, reward, _, _, info = env.step(batch[i])
            vector_obs = infos["final_obs"][i] if t == limit else {k: v[i] for k, v in obs.items()}
            _assert_close_obs(vector_obs, single_obs, venv.interface.state_layout)
            assert rewards[i] == pytest.approx(reward, abs=REWARD_ATOL)
            final = infos["final_info"] if t == limit else infos
            np.testing.assert_array_equal(final["commanded_joints"][i], info["commanded_joints"])
            np.testing.assert_array_equal(final["prompt"][i], info["prompt"])
            if t == limit:
                single_obs, _ = env.reset()
                _assert_close_obs({k: v[i] for k, v in obs.items()}, single_obs, venv.interface.state_layout)
    venv.close()


@pytest.mark.parametrize("guidance_scale", [1.0, 2.0])
def test_lean_inference_gives_the_bits_of_the_plain_path(
    model: ActionToVideoModel, monkeypatch: pytest.MonkeyPatch, guidance_scale: float
) -> None:
    """The inference shortcuts (the ControlNet's prompt tokens encoded once per call, the RoPE tables kept)
    change no bit of what the env returns: a seeded rollout, through an autoreset and with classifier-free
    guidance, equals the one computed the plain way, the prompts re-encoded at every denoising step and the
    tables rebuilt at every call."""

    def rollout() -> list[np.ndarray]:
        venv = WorldModelVectorEnv(
            model=model, num_envs=3, max_episode_steps=2, guidance_scale=guidance_scale, num_inference_steps=2
        )
        venv.action_space.seed(1)
        obs, _ = venv.reset(seed=4)
        out = [obs]
        for _ in range(3):  # through one autoreset
            obs, rewards, _, _, infos = venv.step(venv.action_space.sample())
            out += [obs, rewards, infos["prompt"]]
        venv.close()
        return out

    lean = rollout()
    predict, rotary = model._predict, model._rotary
    monkeypatch.setattr(model, "_predict", lambda *args, trajectory=None: predict(*args))
    monkeypatch.setattr(model, "_rotary", lambda device=None, cache=False: rotary(device))
    plain = rollout()
    for a, b in zip(lean, plain, strict=True):
        np.testing.assert_array_equal(a, b)


def _assert_close_obs(vector_obs: dict, single_obs: dict, layout: dict) -> None:
    diff = np.abs(vector_obs["image"].astype(int) - single_obs["image"].astype(int))
    assert diff.max() <= FRAME_ATOL and diff.mean() < 0.05
    robot = slice(0, layout["gripper"].stop)  # joints, TCP, gripper: kinematics, exact
    np.testing.assert_array_equal(vector_obs["state"][robot], single_obs["state"][robot])
    np.testing.assert_allclose(vector_obs["state"], single_obs["state"], atol=REWARD_ATOL)


def _reach_options(venv: WorldModelVectorEnv) -> dict:
    """Reach from a grey image at the home pose, the goal 5.5 cm from the home TCP towards the workspace."""
    home = venv.robot.ee_pose(venv.robot.home)[0]
    centre = 0.5 * (venv.interface.workspace[0] + venv.interface.workspace[1])
    direction = (centre - home) / np.linalg.norm(centre - home)
    return {
        "image": np.full((64, 64, 3), 110, np.uint8),
        "joints": venv.robot.home,
        "goal": home + 0.055 * direction,
        "direction": direction,
    }


def test_same_step_autoreset_on_termination(model: ActionToVideoModel) -> None:
    venv = WorldModelVectorEnv(
        model=model, num_envs=2, max_episode_steps=10, task="reach", obs_mode="state", reset_mode="image"
    )
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    options = _reach_options(venv)
    direction = options.pop("direction")
    obs, _ = venv.reset(seed=0, options=options)
    start, ee = obs.copy(), venv.interface.state_layout["ee_position"]
    # sub-env 0 moves 2 cm a step towards the goal (5.5 cm away; success within 3 cm): done at step 2
    action = np.zeros((2, 4), dtype=np.float32)
    action[0, :3] = direction
    action[:, 3] = 1.0
    obs, rewards, terminated, truncated, infos = venv.step(action)
    assert not terminated.any() and "final_obs" not in infos
    obs, rewards, terminated, truncated, infos = venv.step(action)
    assert terminated.tolist() == [True, False] and not truncated.any()
    assert infos["_final_obs"].tolist() == [True, False] and infos["_final_info"].tolist() == [True, False]
    final_obs, final_info = infos["final_obs"][0], infos["final_info"]
    assert final_info["is_success"][0] and final_info["_is_success"].tolist() == [True, False]
    assert np.linalg.norm(final_obs[ee] - options["goal"]) < 0.03
    assert rewards[0] == pytest.approx(-np.linalg.norm(final_obs[ee] - options["goal"]), abs=1e-5)
    # the returned observation and info are the new episode's (same options, a fresh seed)
    np.testing.assert_allclose(obs[0], start[0], atol=1e-6)
    assert not infos["is_success"][0]
    np.testing.assert_allclose(obs[1][ee], start[1][ee], atol=1e-3)  # sub-env 1 stood still, its episode on
    venv.close()


def test_truncation_and_reset_mask(model: ActionToVideoModel) -> None:
    venv = WorldModelVectorEnv(model=model, num_envs=2, max_episode_steps=2, task="push", obs_mode="both")
    obs, _ = venv.reset(seed=1)
    step = np.tile(np.array([[0.0, 0.0, -1.0, 1.0]], dtype=np.float32), (2, 1))
    obs, *_ = venv.step(step)
    moved = obs["image"][1].copy()
    # reset sub-env 0 only: sub-env 1 keeps its episode and its step count
    obs, infos = venv.reset(seed=5, options={"reset_mask": np.array([True, False])})
    assert infos["_prompt"].tolist() == [True, False]
    np.testing.assert_array_equal(obs["image"][1], moved)
    single = WorldModelEnv(model=model, task="push", obs_mode="both")
    np.testing.assert_array_equal(obs["image"][0], single.reset(seed=5)[0]["image"])  # seed + index 0
    obs, rewards, terminated, truncated, infos = venv.step(step)
    assert truncated.tolist() == [False, True]
    assert infos["_final_obs"].tolist() == [False, True]
    assert infos["final_obs"][1]["image"].shape == (64, 64, 3)
    obs, rewards, terminated, truncated, infos = venv.step(step)
    assert truncated.tolist() == [True, False]
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 4\)"):
        venv.step(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": [1, 0]})
    venv.close()
    single.close()


def test_make_vec_and_accessors(model_dir: Path) -> None:
    venv = gym.make_vec(
        "vap_env/PandaPush-WM-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        model=model_dir,
        render_mode="rgb_array",
        render_view="prompt",
    )
    assert isinstance(venv, WorldModelVectorEnv) and venv.max_episode_steps == 50
    assert venv.observation_space.shape == (2, 64, 64, 3) and venv.action_space.shape == (2, 4)
    obs, infos = venv.reset(seed=0)
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
    images = venv.render()
    assert len(images) == 2
    np.testing.assert_array_equal(images[0], infos["prompt"][0])
    cameras = venv.get_attr("camera")
    assert len(cameras) == 2 and cameras[0].width == 64
    assert [interface.task_name for interface in venv.get_attr("interface")] == ["push", "push"]
    assert venv.call("get_attr", "render_view") == (("prompt", "prompt"),) * 2
    with pytest.raises(ValueError, match="share"):
        venv.set_attr("render_view", ["frame", "prompt"])
    # policies read the task and action mapping in one place, not from attributes copied onto the env
    assert (venv.interface.task_name, venv.interface.max_ee_step) == ("push", 0.02)
    assert not hasattr(venv, "task_name") and not hasattr(venv, "max_ee_step")
    venv.close()
