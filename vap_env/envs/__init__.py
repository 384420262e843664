"""Gymnasium environments whose dynamics are the world model.

- :class:`~vap_env.envs.world_model_env.WorldModelEnv`: one imagined episode at a time (``gym.make``);
- :class:`~vap_env.envs.vector_env.WorldModelVectorEnv`: N episodes, one batched ``generate`` per step
  (``gym.make_vec(..., vectorization_mode="vector_entry_point")``), same-step autoreset;
- :class:`~vap_env.envs.sb3.SB3VecEnvAdapter`: stable-baselines3 on top of it;
- :mod:`~vap_env.envs.config`: :class:`~vap_env.envs.config.WorldModelEnvConfig`, the arguments all of them
  share (``gym.make`` keyword arguments build it);
- :mod:`~vap_env.envs.interface`: :class:`~vap_env.envs.interface.EnvInterface`, what policies read from an
  env (here and in ``SimEnv``);
- :mod:`~vap_env.envs.imagined_world`: the imagined episodes both envs run (``ImaginedWorld``);
- :mod:`~vap_env.envs.estimation`: task state (the red cube) estimated from frames, for rewards.

The model is any :class:`~vap_env.model.protocol.WorldModel`; :func:`vap_env.model.loading.load_world_model`
turns a directory or ``"default"`` into one. Ids: ``vap_env/<Robot><Task>-WM-v0`` (:data:`WM_ENV_IDS`),
registered by ``import vap_env``. This module stays light (no torch import); the classes load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vap_env.envs.registration import WM_ENV_IDS, register_world_model_envs, wm_env_id

if TYPE_CHECKING:
    from vap_env.envs.config import WorldModelEnvConfig
    from vap_env.envs.interface import EnvInterface
    from vap_env.envs.sb3 import SB3VecEnvAdapter
    from vap_env.envs.vector_env import WorldModelVectorEnv
    from vap_env.envs.world_model_env import WorldModelEnv

__all__ = [
    "WM_ENV_IDS",
    "EnvInterface",
    "SB3VecEnvAdapter",
    "WorldModelEnv",
    "WorldModelEnvConfig",
    "WorldModelVectorEnv",
    "register_world_model_envs",
    "wm_env_id",
]

_LAZY = {
    "EnvInterface": "vap_env.envs.interface",
    "WorldModelEnv": "vap_env.envs.world_model_env",
    "WorldModelEnvConfig": "vap_env.envs.config",
    "WorldModelVectorEnv": "vap_env.envs.vector_env",
    "SB3VecEnvAdapter": "vap_env.envs.sb3",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vap_env.envs' has no attribute {name!r}")
