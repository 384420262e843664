"""WorldModelEnvConfig (validated, frozen, built from keyword arguments) and EnvInterface in both worlds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from vap_env.envs.config import WorldModelEnvConfig
from vap_env.envs.interface import EnvInterface
from vap_env.envs.vector_env import WorldModelVectorEnv
from vap_env.envs.world_model_env import WorldModelEnv
from vap_env.model import ActionToVideoModel
from vap_env.policies import make_policy
from vap_env.sim.env import SimEnv


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "stack"}, "`task` must be one of reach, push; got 'stack'"),
        ({"action_mode": "torque"}, "`action_mode` must be one of ee_delta, joint_delta; got 'torque'"),
        ({"obs_mode": "depth"}, "`obs_mode` must be one of image, state, both; got 'depth'"),
        ({"camera": "wrist"}, "`camera` must be one of fixed, random or a Camera; got 'wrist'"),
        ({"reset_mode": "dream"}, "`reset_mode` must be one of sim, episode, image; got 'dream'"),
        ({"num_inference_steps": 0}, "`num_inference_steps` must be >= 1, got 0"),
        ({"reset_mode": "episode"}, "reset_mode='episode' needs `dataset`"),
    ],
)
def test_invalid_fields_are_named_with_their_valid_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        WorldModelEnvConfig(**kwargs)


def test_config_is_frozen_and_build_applies_overrides() -> None:
    config = WorldModelEnvConfig(task="reach", guidance_scale=2, max_ee_step=1)
    assert config.guidance_scale == 2.0 and isinstance(config.guidance_scale, float)
    assert isinstance(config.max_ee_step, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.task = "push"  # type: ignore[misc]
    assert WorldModelEnvConfig.build(config) is config
    assert WorldModelEnvConfig.build(None) == WorldModelEnvConfig()
    built = WorldModelEnvConfig.build(config, obs_mode="state")
    assert (built.task, built.obs_mode, built.guidance_scale) == ("reach", "state", 2.0)
    with pytest.raises(TypeError, match=r"unknown world-model env arguments \['colour'\]; valid: robot, "):
        WorldModelEnvConfig.build(config, colour="red")
    with pytest.raises(TypeError, match="must be a WorldModelEnvConfig"):
        WorldModelEnvConfig.build({"task": "reach"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`obs_mode` must be one of"):
        WorldModelEnvConfig.build(config, obs_mode="depth")


def test_envs_take_a_config_or_its_fields(model: ActionToVideoModel, model_dir: Path) -> None:
    config = WorldModelEnvConfig(task="reach", obs_mode="state", camera="random")
    by_config = WorldModelEnv(model=model, config=config)
    by_kwargs = WorldModelEnv(model=model, task="reach", obs_mode="state", camera="random")
    assert by_config.config == by_kwargs.config == config
    assert by_config.config is by_config.world.config and by_config.interface is by_config.world.interface
    np.testing.assert_array_equal(by_config.reset(seed=2)[0], by_kwargs.reset(seed=2)[0])
    # the registered id's keyword arguments (robot, task) and gym.make's replace the config's fields
    made = gym.make("vap_env/PandaPush-WM-v0", model=model_dir, config=config, num_inference_steps=2)
    assert (made.unwrapped.config.task, made.unwrapped.config.obs_mode) == ("push", "state")
    assert made.unwrapped.config.num_inference_steps == 2 and made.unwrapped.interface.task_name == "push"
    venv = WorldModelVectorEnv(model=model, num_envs=2, config=config)
    assert venv.config is config and venv.interface.task_name == "reach"
    with pytest.raises(TypeError, match="unknown world-model env arguments"):
        WorldModelEnv(model=model, substeps=3)
    for env in (by_config, by_kwargs, made, venv):
        env.close()


def test_the_interface_is_the_same_in_both_worlds(model: ActionToVideoModel) -> None:
    for task in ("reach", "push"):
        sim = SimEnv(robot="panda", task=task, obs_mode="state")
        wm = gym.make(f"vap_env/Panda{task.title()}-WM-v0", model=model, obs_mode="state")
        a, b = EnvInterface.of(sim), EnvInterface.of(wm)  # `of` unwraps the TimeLimit
        assert a is sim.interface and b is wm.unwrapped.interface
        assert (a.task_name, a.action_mode, a.max_ee_step, a.max_joint_step) == (
            b.task_name,
            b.action_mode,
            b.max_ee_step,
            b.max_joint_step,
        )
        assert dict(a.state_layout) == dict(b.state_layout)
        for low_high_a, low_high_b in zip(a.workspace, b.workspace, strict=True):
            np.testing.assert_allclose(low_high_a, low_high_b)
        make_policy("scripted", sim), make_policy("scripted", wm)  # the experts read it in both worlds
        sim.close()
        wm.close()


def test_an_env_without_an_interface_is_refused_by_name() -> None:
    import gymnasium as gym

    with pytest.raises(TypeError, match="CartPoleEnv has no `interface`.*SimEnv, WorldModelEnv"):
        EnvInterface.of(gym.make("CartPole-v1"))
