"""stable-baselines3 on a Gymnasium vector env: :class:`SB3VecEnvAdapter`.

SB3 2.x takes its own ``VecEnv`` API, not ``gymnasium.vector.VectorEnv`` (SB3 issues #1608, #1745). The
adapter maps one onto the other exactly when the vector env autoresets in the same step
(``AutoresetMode.SAME_STEP``, as :class:`~vap_env.envs.vector_env.WorldModelVectorEnv` and a
``SyncVectorEnv(..., autoreset_mode=AutoresetMode.SAME_STEP)`` do): for every finished sub-env SB3 gets the
finished episode's last info with ``terminal_observation`` and ``TimeLimit.truncated``, and the new
episode's first observation, just as ``DummyVecEnv`` would give. A next-step autoreset env cannot be mapped
without stepping the unfinished envs, so it is refused.

Example:
    >>> venv = gym.make_vec("vap_env/PandaPush-WM-v0", num_envs=8, vectorization_mode="vector_entry_point",
    ...                     model="runs/wm", obs_mode="image")
    >>> env = VecMonitor(SB3VecEnvAdapter(venv))
    >>> PPO("CnnPolicy", env).learn(10_000)
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn


class SB3VecEnvAdapter(VecEnv):
    """A ``gymnasium.vector.VectorEnv`` with same-step autoreset as a stable-baselines3 ``VecEnv``.

    Use it under ``VecMonitor`` for episode statistics. Image observations stay uint8 (N, H, W, 3), so SB3
    wraps the env in ``VecTransposeImage`` itself. ``seed`` and ``set_options`` apply at the next ``reset``,
    as in every SB3 ``VecEnv``; per-env options must be equal (a Gymnasium vector env takes one dict).

    Args:
        venv: The vector env; ``venv.metadata["autoreset_mode"]`` must be ``AutoresetMode.SAME_STEP``.
    """

    def __init__(self, venv: VectorEnv) -> None:
        mode = venv.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"SB3VecEnvAdapter needs a vector env with autoreset_mode=AutoresetMode.SAME_STEP, "
                f"got {mode!r}: SB3 expects a finished env's terminal observation and the next "
                "episode's first observation from the same step"
            )
        self.venv = venv
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    # ----------------------------------------------------------------------------------------- VecEnv API
    def reset(self) -> VecEnvObs:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options[0]
        # SB3 keeps a deep copy per env: equal pickles tell copies of one dict (arrays, cameras) from others
        if any(pickle.dumps(o) != pickle.dumps(options) for o in self._options[1:]):
            raise ValueError(
                "a Gymnasium vector env takes one options dict for all sub-envs; got differing ones"
            )
        obs, infos = self.venv.reset(seed=seeds, options=options or None)
        self.reset_infos = self._unbatch(infos)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        self._actions = None
        dones = np.logical_or(terminated, truncated)
        step_infos = self._unbatch(infos)
        finals = self._unbatch(infos["final_info"]) if "final_info" in infos else None
        for i in np.flatnonzero(dones):
            if finals is None or not infos["_final_obs"][i]:
                raise RuntimeError(
                    f"sub-env {i} finished without info['final_obs']: not a same-step autoreset"
                )
            self.reset_infos[i] = step_infos[i]  # the new episode's reset info
            step_infos[i] = finals[i]
            step_infos[i]["terminal_observation"] = infos["final_obs"][i]
        for i, info in enumerate(step_infos):
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, np.asarray(rewards, dtype=np.float32), dones, step_infos

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        images = self.venv.render()
        return [None] * self.num_envs if images is None else list(images)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        values = self._per_env(attr_name)
        return [values[i] for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if not hasattr(self.venv, "set_attr"):
            setattr(self.venv, attr_name, value)
            return
        values = list(self._per_env(attr_name)) if hasattr(self.venv, "get_attr") else [value] * self.num_envs
        for i in self._get_indices(indices):
            values[i] = value
        self.venv.set_attr(attr_name, values)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        if hasattr(self.venv, "call"):
            results = self.venv.call(method_name, *method_args, **method_kwargs)
        else:
            results = (getattr(self.venv, method_name)(*method_args, **method_kwargs),) * self.num_envs
        return [results[i] for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        envs = getattr(self.venv, "envs", None)  # SyncVectorEnv holds real sub-envs; batched envs have none
        return [envs is not None and _is_wrapped(envs[i], wrapper_class) for i in self._get_indices(indices)]

    # ----------------------------------------------------------------------------------------- internals
    def _per_env(self, attr_name: str) -> Sequence[Any]:
        if hasattr(self.venv, "get_attr"):
            return self.venv.get_attr(attr_name)
        return [getattr(self.venv, attr_name)] * self.num_envs

    def _unbatch(self, infos: dict[str, Any]) -> list[dict[str, Any]]:
        """Gymnasium's batched info dict (values + ``_key`` masks) -> one dict per sub-env."""
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for key, value in infos.items():
            if key.startswith("_") or key in ("final_obs", "final_info"):
                continue
            mask = infos.get(f"_{key}", np.ones(self.num_envs, dtype=bool))
            per_env = self._unbatch(value) if isinstance(value, dict) else value
            for i in np.flatnonzero(mask):
                out[i][key] = per_env[i]
        return out


def _is_wrapped(env: gym.Env, wrapper_class: type[gym.Wrapper]) -> bool:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, wrapper_class):
            return True
        env = env.env
    return False
