"""SB3VecEnvAdapter: PPO and SAC learn in imagination; terminal observations as DummyVecEnv gives them."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import TimeLimit
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecTransposeImage

from vap_env.envs.sb3 import SB3VecEnvAdapter
from vap_env.envs.vector_env import WorldModelVectorEnv
from vap_env.model import ActionToVideoModel


def test_ppo_cnn_policy_learns_on_images(model_dir: Path) -> None:
    venv = gym.make_vec(
        "vap_env/PandaPush-WM-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        model=model_dir,
        max_episode_steps=6,
    )
    env = VecMonitor(SB3VecEnvAdapter(venv))
    agent = PPO("CnnPolicy", env, n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu")
    assert isinstance(agent.get_env(), VecTransposeImage)  # uint8 HWC images were recognised
    agent.learn(total_timesteps=16)
    assert agent.num_timesteps == 16
    # two 6-step episodes per env finished in 8 steps each: VecMonitor saw the terminal infos
    assert len(agent.ep_info_buffer) == 2 and agent.ep_info_buffer[0]["l"] == 6
    env.close()


def test_sac_mlp_policy_learns_on_states(model: ActionToVideoModel) -> None:
    venv = WorldModelVectorEnv(model=model, num_envs=2, max_episode_steps=5, task="reach", obs_mode="state")
    env = VecMonitor(SB3VecEnvAdapter(venv))
    agent = SAC(
        "MlpPolicy",
        env,
        learning_starts=8,
        batch_size=8,
        train_freq=4,
        gradient_steps=1,
        buffer_size=64,
        seed=0,
        device="cpu",
    )
    agent.learn(total_timesteps=20)
    # rollouts of train_freq=4 steps x 2 envs: 24 transitions, stored as 12 rows of 2, 2 updates after warm-up
    assert agent.num_timesteps == 24 and agent.replay_buffer.size() == 12 and agent._n_updates >= 2
    env.close()


def test_adapter_passes_terminal_observations(model: ActionToVideoModel) -> None:
    venv = WorldModelVectorEnv(model=model, num_envs=2, max_episode_steps=2, task="push", obs_mode="state")
    env = SB3VecEnvAdapter(venv)
    env.seed(3)
    obs = env.reset()
    assert obs.shape == (2, venv.single_observation_space.shape[0]) and len(env.reset_infos) == 2
    action = np.array([[0.0, 0.0, -1.0, 1.0]] * 2, dtype=np.float32)
    obs, rewards, dones, infos = env.step(action)
    assert not dones.any() and rewards.dtype == np.float32
    assert all("terminal_observation" not in info and info["TimeLimit.truncated"] is False for info in infos)
    obs, rewards, dones, infos = env.step(action)
    assert dones.all()
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        terminal = info["terminal_observation"]
        # the finished episode's last state (2 cm lower twice) and its info; the returned obs is the new start
        z = venv.interface.state_layout["ee_position"].start + 2
        assert terminal[z] == pytest.approx(obs[i][z] - 0.04, abs=1e-3)
        np.testing.assert_allclose(
            info["ee_position"], terminal[venv.interface.state_layout["ee_position"]], atol=1e-6
        )
        assert env.reset_infos[i]["ee_position"][2] == pytest.approx(obs[i][z], abs=1e-6)
    assert [interface.task_name for interface in env.get_attr("interface")] == ["push", "push"]
    assert env.get_attr("camera", indices=1)[0].width == 64
    assert env.env_is_wrapped(TimeLimit) == [False, False]
    env.close()


def _cartpole() -> gym.Env:
    return gym.make("CartPole-v1", max_episode_steps=5)


def test_adapter_over_sync_vector_env_matches_dummy_vec_env() -> None:
    """Over any same-step Gymnasium vector env the adapter gives what SB3's own DummyVecEnv gives."""
    ours = SB3VecEnvAdapter(SyncVectorEnv([_cartpole] * 2, autoreset_mode=AutoresetMode.SAME_STEP))
    theirs = DummyVecEnv([_cartpole] * 2)
    for env in (ours, theirs):
        env.seed(0)
    np.testing.assert_array_equal(ours.reset(), theirs.reset())
    for _ in range(7):
        action = np.array([1, 0])
        a, b = ours.step(action), theirs.step(action)
        for x, y in zip(a[:3], b[:3], strict=True):
            np.testing.assert_array_equal(x, y)
        for info_a, info_b in zip(a[3], b[3], strict=True):
            assert info_a.keys() == info_b.keys()
            if "terminal_observation" in info_b:
                np.testing.assert_array_equal(info_a["terminal_observation"], info_b["terminal_observation"])
                assert info_a["TimeLimit.truncated"] == info_b["TimeLimit.truncated"]
    assert ours.env_is_wrapped(TimeLimit) == theirs.env_is_wrapped(TimeLimit) == [True, True]
    ours.close()
    theirs.close()


def test_adapter_refuses_next_step_autoreset() -> None:
    venv = SyncVectorEnv([_cartpole] * 2)  # NEXT_STEP by default
    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VecEnvAdapter(venv)
    venv.close()


def test_adapter_passes_options_to_the_vector_env(model: ActionToVideoModel) -> None:
    venv = WorldModelVectorEnv(model=model, num_envs=2, task="reach", obs_mode="state", reset_mode="image")
    env = SB3VecEnvAdapter(venv)
    goal = np.array([0.5, 0.1, 0.2])
    image = np.full((64, 64, 3), 90, dtype=np.uint8)
    env.set_options({"image": image, "joints": venv.robot.home, "goal": goal})  # deep-copied per env by SB3
    obs = env.reset()
    np.testing.assert_allclose(obs[:, venv.interface.state_layout["goal"]], [goal, goal], atol=1e-6)
    env.set_options([{"image": image, "joints": venv.robot.home, "goal": g} for g in (goal, -goal)])
    with pytest.raises(ValueError, match="one options dict"):
        env.reset()
    env.close()
