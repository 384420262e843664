"""Gymnasium environments whose dynamics are the world model.

- :class:`~vap_env.envs.world_model_env.WorldModelEnv`: one imagined episode at a time (``gym.make``);
- :class:`~vap_env.envs.vector_env.WorldModelVectorEnv`: N episodes, one batched ``generate`` per step
  (``gym.make_vec(..., vectorization_mode="vector_entry_point")``), same-step autoreset;
- :class:`~vap_env.envs.sb3.SB3VecEnvAdapter`: stable-baselines3 on top of it;
- :mod:`~vap_env.envs.imagined_world`: the imagined episodes both envs run (``ImaginedWorld``) and
  ``load_world_model``;
- :mod:`~vap_env.envs.estimation`: task state (the red cube) estimated from frames, for rewards.

Ids: ``vap_env/<Robot><Task>-WM-v0`` (:data:`WM_ENV_IDS`), registered by ``import vap_env``. This module
stays light (no torch import); the classes load on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vap_env.envs.registration import WM_ENV_IDS, register_world_model_envs, wm_env_id

if TYPE_CHECKING:
    from vap_env.envs.sb3 import SB3VecEnvAdapter
    from vap_env.envs.vector_env import WorldModelVectorEnv
    from vap_env.envs.world_model_env import WorldModelEnv

__all__ = [
    "WM_ENV_IDS",
    "SB3VecEnvAdapter",
    "WorldModelEnv",
    "WorldModelVectorEnv",
    "DEFAULT_MODEL_DIR",
    "default_model_path",
    "default_segmenter_path",
    "register_world_model_envs",
    "wm_env_id",
]

_LAZY = {
    "WorldModelEnv": "vap_env.envs.world_model_env",
    "WorldModelVectorEnv": "vap_env.envs.vector_env",
    "SB3VecEnvAdapter": "vap_env.envs.sb3",
}


DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "default_model"
"""Where the shipped default lives: ``model/`` (the world model with its codec), ``segmenter/`` (the robot
segmenter `vap-env evaluate` uses with it) and ``MODEL_CARD.md`` (data, commands, held-out metrics)."""


def default_model_path() -> Path:
    """The directory of the default world model (``model="default"``): the tiny Panda push and reach model,
    64x64, skeleton prompts, trained by vap-env on its simulator (see ``vap_env/default_model/MODEL_CARD.md``).

    Raises:
        FileNotFoundError: If this installation lacks it (a build without package data); the message says
            what to pass instead.
    """
    path = DEFAULT_MODEL_DIR / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the default world model is missing from this installation ({path / 'config.json'} does not "
            "exist): reinstall vap-env with its package data, or pass model=DIR, a directory written by "
            "ActionToVideoModel.save_pretrained (or the --out directory of `vap-env train`); e.g. "
            "gym.make('vap_env/PandaPush-WM-v0', model='runs/wm')"
        )
    return path


def default_segmenter_path() -> Path | None:
    """The robot segmenter shipped with the default model (fitted on random-camera simulator frames and the
    codec's reconstructions of them), or ``None`` if this installation lacks it."""
    path = DEFAULT_MODEL_DIR / "segmenter"
    return path if (path / "segmenter.json").is_file() else None


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vap_env.envs' has no attribute {name!r}")
