"""The ``sb3:`` source: checkpoints trained here, their algorithm read from the file, observations matched."""

from __future__ import annotations

import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3

from vap_env.policies import (
    CheckedBatchPolicy,
    PolicyError,
    SB3Policy,
    as_batch_policy,
    as_policy,
    is_batch_policy,
)
from vap_env.policies.sb3 import read_algorithm
from vap_env.sim.env import SimEnv

ACTIONS = spaces.Box(-1.0, 1.0, (4,), np.float32)


def tiny() -> dict:
    """Small-net keyword arguments for an SB3 algorithm; fresh each time, as SB3 adds to ``policy_kwargs``."""
    return dict(policy_kwargs=dict(net_arch=[16]), device="cpu", seed=0)


@pytest.fixture(scope="module")
def state_env():
    env = SimEnv(robot="panda", task="reach", obs_mode="state")
    yield env
    env.close()


@pytest.fixture(scope="module")
def both_env():
    env = SimEnv(robot="panda", task="reach", obs_mode="both", image_size=36)
    yield env
    env.close()


@pytest.fixture(scope="module")
def ppo_zip(state_env, tmp_path_factory) -> Path:
    """A PPO trained for 64 steps on reach states (about a second)."""
    model = PPO("MlpPolicy", state_env, n_steps=64, batch_size=64, n_epochs=1, **tiny())
    model.learn(64)
    path = tmp_path_factory.mktemp("sb3") / "ppo_reach.zip"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def ppo(ppo_zip) -> PPO:
    return PPO.load(ppo_zip, device="cpu")


def observations(env, seeds) -> list:
    return [env.reset(seed=s)[0] for s in seeds]


def test_actions_are_the_models(state_env, ppo_zip, ppo):
    policy = as_policy(f"sb3:{ppo_zip}", state_env)
    assert policy.name == f"sb3:{ppo_zip}" and isinstance(policy.policy, SB3Policy)
    assert isinstance(policy.policy.model, PPO)  # the algorithm was read from the file
    policy.reset(seed=0)
    for obs in observations(state_env, range(3)):
        expected, _ = ppo.predict(obs, deterministic=True)
        np.testing.assert_array_equal(policy.act(obs), expected)


def test_explicit_algo_and_stochastic_actions_replay(state_env, ppo_zip, ppo):
    policy = as_policy(f"mine=sb3:{ppo_zip},algo=ppo,deterministic=false", state_env)
    assert policy.name == "mine" and policy.policy.deterministic is False
    obs = observations(state_env, [0])[0]
    global_state = torch.get_rng_state()
    runs = []
    for _ in range(2):
        policy.reset(seed=5)
        runs.append(np.stack([policy.act(obs) for _ in range(4)]))
    np.testing.assert_array_equal(runs[0], runs[1])  # the policy's seed replays its draws
    assert not np.allclose(runs[0][0], runs[0][1])  # ... which are draws, not the mean
    assert not np.allclose(runs[0][0], ppo.predict(obs, deterministic=True)[0])
    assert torch.equal(torch.get_rng_state(), global_state)  # torch's global stream is left alone


def test_batched_act_equals_per_row_act(state_env, ppo_zip):
    policy = as_batch_policy(f"sb3:{ppo_zip}", state_env, num_envs=5)  # one model for the batch, not five
    assert is_batch_policy(policy) and isinstance(policy, CheckedBatchPolicy)
    rows = observations(state_env, range(5))
    policy.reset_batch(list(range(5)))
    batch = policy.act_batch(np.stack(rows))
    assert batch.shape == (5, 4)
    # one matmul over the batch rounds differently from one per row (measured: |diff| <= 2e-9)
    np.testing.assert_allclose(batch, np.stack([policy.act(obs) for obs in rows]), rtol=0, atol=1e-6)
    with pytest.raises(PolicyError, match=r"shape \(3, 4\), expected \(5, 4\)"):
        policy.act_batch(np.stack(rows[:3]))
    sampling = as_policy(f"sb3:{ppo_zip},deterministic=false", state_env)
    runs = []
    for _ in range(2):
        sampling.reset_batch([3, 4, 5, 6, 7])
        runs.append(sampling.act_batch(np.stack(rows)))
    np.testing.assert_array_equal(runs[0], runs[1])  # the batch's seeds replay its draws


def test_state_model_in_both_env_gets_the_state(both_env, ppo_zip, ppo):
    policy = as_policy(f"sb3:{ppo_zip}", both_env)
    rows = observations(both_env, range(3))
    for obs in rows:
        np.testing.assert_array_equal(policy.act(obs), ppo.predict(obs["state"], deterministic=True)[0])
    batch = {k: np.stack([o[k] for o in rows]) for k in rows[0]}
    policy.reset_batch([0, 1, 2])
    expected = ppo.predict(batch["state"], deterministic=True)[0]
    np.testing.assert_array_equal(policy.act_batch(batch), expected)  # the same batched call: bit-equal


def test_image_models_get_hwc_images(both_env, tmp_path):
    image_env = SimEnv(robot="panda", task="reach", obs_mode="image", image_size=36)
    cnn = PPO("CnnPolicy", image_env, n_steps=8, batch_size=8, **tiny())
    image_env.close()
    assert cnn.observation_space.shape == (3, 36, 36)  # trained through VecTransposeImage
    multi = PPO("MultiInputPolicy", both_env, n_steps=8, batch_size=8, **tiny())
    cnn.save(tmp_path / "cnn.zip")
    multi.save(tmp_path / "multi.zip")
    rows = observations(both_env, range(2))
    batch = {k: np.stack([o[k] for o in rows]) for k in rows[0]}
    for name, model, part in (("cnn", cnn, lambda o: o["image"]), ("multi", multi, lambda o: o)):
        policy = as_policy(f"sb3:{tmp_path / name}", both_env)  # the .zip may be left off, as in SB3
        expected = np.stack([model.predict(part(o), deterministic=True)[0] for o in rows])
        np.testing.assert_allclose(np.stack([policy.act(o) for o in rows]), expected, atol=1e-6)
        np.testing.assert_allclose(policy.act_batch(batch), expected, atol=1e-6)
    image_only = SimpleNamespace(observation_space=both_env.observation_space["image"], action_space=ACTIONS)
    policy = as_policy(f"sb3:{tmp_path / 'cnn.zip'}", image_only)
    np.testing.assert_allclose(
        policy.act(rows[0]["image"]), cnn.predict(rows[0]["image"], deterministic=True)[0], atol=1e-6
    )
    smaller = SimpleNamespace(
        observation_space=spaces.Box(0, 255, (32, 32, 3), np.uint8), action_space=ACTIONS
    )
    with pytest.raises(
        PolicyError,
        match=r"observes Box\(0, 255, \(3, 36, 36\), uint8\), but the env's "
        r"observations are Box\(0, 255, \(32, 32, 3\), uint8\)",
    ):
        as_policy(f"sb3:{tmp_path / 'cnn.zip'}", smaller)
    with pytest.raises(
        PolicyError,
        match=r"observes Dict\(image: Box\(0, 255, \(3, 36, 36\), uint8\), state: "
        r"Box\(\(14,\), float32\)\), but the env's observations are Box\(0, 255, \(36, 36, 3\)",
    ):
        as_policy(f"sb3:{tmp_path / 'multi.zip'}", image_only)


def test_observation_mismatch_names_both_spaces(state_env, ppo_zip, tmp_path):
    image_only = SimpleNamespace(
        observation_space=spaces.Box(0, 255, (36, 36, 3), np.uint8), action_space=state_env.action_space
    )
    with pytest.raises(
        PolicyError,
        match=r"observes Box\(\(14,\), float32\), but the env's observations "
        r"are Box\(0, 255, \(36, 36, 3\), uint8\)",
    ):
        as_policy(f"sb3:{ppo_zip}", image_only)
    joint = SimpleNamespace(
        observation_space=state_env.observation_space, action_space=spaces.Box(-1, 1, (8,))
    )
    with pytest.raises(
        PolicyError,
        match=r"acts in Box\(-1.0, 1.0, \(4,\), float32\), but the env's action "
        r"space is Box\(-1.0, 1.0, \(8,\), float32\)",
    ):
        as_policy(f"sb3:{ppo_zip}", joint)


@pytest.mark.parametrize("algo", [A2C, SAC, TD3, DDPG])
def test_algorithm_is_read_from_the_file(state_env, tmp_path, algo):
    extra = {} if algo is A2C else {"buffer_size": 8}
    model = algo("MlpPolicy", state_env, **tiny(), **extra)
    model.save(tmp_path / "model.zip")
    assert read_algorithm(tmp_path / "model.zip", "spec") == algo.__name__
    policy = as_policy(f"sb3:{tmp_path / 'model.zip'}", state_env)
    assert type(policy.policy.model) is algo
    obs = observations(state_env, [1])[0]
    np.testing.assert_array_equal(policy.act(obs), model.predict(obs, deterministic=True)[0])


def test_load_errors(state_env, ppo_zip, tmp_path):
    missing = tmp_path / "nope.zip"
    with pytest.raises(
        PolicyError, match=r"policy 'sb3:.*nope.zip': no such file .*nope.zip.*stable-baselines3"
    ):
        as_policy(f"sb3:{missing}", state_env)
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    with pytest.raises(PolicyError, match=r"unreadable checkpoint .*notes.zip.*: not a zip file"):
        as_policy(f"sb3:{text}", state_env)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("weights.bin", b"\0")
    with pytest.raises(PolicyError, match=r"unreadable checkpoint .*other.zip.*no `data` entry"):
        as_policy(f"sb3:{other}", state_env)
    contrib = tmp_path / "tqc.zip"
    with zipfile.ZipFile(contrib, "w") as archive:  # what an sb3_contrib TQC writes, as far as it matters
        archive.writestr(
            "data",
            '{"policy_class": {"__module__": "sb3_contrib.tqc.policies", '
            '"__init__": "<function TQCPolicy.__init__ at 0x0>"}, "target_entropy": -4}',
        )
    with pytest.raises(
        PolicyError,
        match=r"cannot tell the algorithm of .*tqc.zip.* from its policy class "
        r"sb3_contrib.tqc.policies.TQCPolicy: give it, sb3:.*tqc.zip,algo=NAME with NAME one of",
    ):
        as_policy(f"sb3:{contrib}", state_env)
    with pytest.raises(PolicyError, match=r"unknown algo='FOO'; valid: PPO, A2C, SAC, TD3, DDPG, DQN"):
        as_policy(f"sb3:{ppo_zip},algo=FOO", state_env)
    with pytest.raises(PolicyError, match=r"cannot load .*ppo_reach.zip.* as SAC .*is it a SAC checkpoint"):
        as_policy(f"sb3:{ppo_zip},algo=SAC", state_env)
    with pytest.raises(PolicyError, match=r"'deterministic': 'maybe' is not a boolean"):
        as_policy(f"sb3:{ppo_zip},deterministic=maybe", state_env)
    with pytest.raises(PolicyError, match=r"policy 'mine': \(sb3:.*\) no such file"):
        as_policy(f"mine=sb3:{missing}", state_env)
