"""The batched world-model environment: N imagined episodes, one ``generate`` call per step."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array

from vap_env.camera import Camera
from vap_env.envs.config import WorldModelEnvConfig, check_render
from vap_env.envs.imagined_world import ImaginedEpisode, ImaginedWorld
from vap_env.envs.world_model_env import WorldModelEnv
from vap_env.model.protocol import WorldModel

_PER_SUB_ENV = ("camera", "episode", "frame")  # get_attr names whose value differs between sub-envs


class WorldModelVectorEnv(VectorEnv):
    """``num_envs`` :class:`~vap_env.envs.world_model_env.WorldModelEnv` episodes stepped together.

    Every step runs the N actions through their controllers and prompts, then ONE batched
    ``model.generate`` call for all N episodes (each row with its own ``torch.Generator``, so sub-env ``i``
    reproduces a single ``WorldModelEnv`` reset with the same seed, up to batched float arithmetic). Spaces,
    rewards, info keys, reset modes, arguments (a ``config`` and/or its fields as keyword arguments), ``config``
    and ``interface`` are the single env's (see its docstring); additionally:

    - ``num_envs``: the number of sub-envs; ``max_episode_steps``: truncation after that many steps (``None``
      never truncates). ``gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point", model=DIR)``
      passes both, the time limit from the registered id.
    - Autoreset is same-step (``metadata["autoreset_mode"] = AutoresetMode.SAME_STEP``): a sub-env that
      terminates or truncates is reset within the same ``step``; the returned observation is the new
      episode's first one, and ``info["final_obs"][i]`` / ``info["final_info"]`` hold the last observation and
      info of the finished episode (with their ``_final_obs`` / ``_final_info`` masks), as Gymnasium's
      ``SyncVectorEnv`` does in that mode. Autoresets draw their seed from the sub-env's generator and reuse
      the options of that sub-env's last explicit reset.
    - ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``; ``seed`` may also be a list of N seeds (``None``
      entries keep that sub-env's generator). ``options={"reset_mask": (N,) bool}`` resets only the masked
      sub-envs (the others keep their episode; ``info`` holds the reset ones). Other options go to every reset
      sub-env, except that ``"episode"`` may be a sequence with one index per sub-env.
    - ``render()`` returns a tuple of N images (``render_view`` as in the single env).
    - ``get_attr(name)`` (per-sub-env values: ``camera``, ``episode``, ``frame``; others are shared),
      ``set_attr``, ``call``: the accessors the stable-baselines3 adapter uses.
    """

    metadata = {
        "render_modes": ["rgb_array"],
        "render_fps": WorldModelEnv.metadata["render_fps"],
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }

    def __init__(
        self,
        model: WorldModel | str | Path = "default",
        num_envs: int = 1,
        max_episode_steps: int | None = None,
        config: WorldModelEnvConfig | None = None,
        *,
        render_mode: str | None = None,
        render_view: str = "frame",
        **overrides: Any,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"`num_envs` must be >= 1, got {num_envs}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"`max_episode_steps` must be >= 1 or None, got {max_episode_steps}")
        check_render(render_mode, render_view, self.metadata["render_modes"])
        self.world = w = ImaginedWorld(model, config, **overrides)
        self.num_envs, self.max_episode_steps = int(num_envs), max_episode_steps
        self.render_mode, self.render_view = render_mode, render_view
        self.single_action_space, self.single_observation_space = w.action_space, w.observation_space
        self.action_space = batch_space(w.action_space, self.num_envs)
        self.observation_space = batch_space(w.observation_space, self.num_envs)
        self.config, self.interface, self.model, self.robot = w.config, w.interface, w.model, w.robot
        self.episodes: list[ImaginedEpisode | None] = [None] * self.num_envs
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._options: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        self._steps = np.zeros(self.num_envs, dtype=np.int64)

    # ----------------------------------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        options = dict(options or {})
        mask = np.asarray(options.pop("reset_mask", np.ones(self.num_envs, dtype=bool)))
        if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
            raise ValueError(
                f"options['reset_mask'] must be a ({self.num_envs},) bool array, got "
                f"{mask.dtype} {mask.shape}"
            )
        seeds = self._seed_list(seed)
        if isinstance(seed, int | np.integer):
            super().reset(seed=int(seed))
        episode = options.pop("episode", None)
        infos: dict[str, Any] = {}
        for i in np.flatnonzero(mask):
            sub_options = dict(options)
            if episode is not None:
                sub_options["episode"] = episode[i] if isinstance(episode, Sequence | np.ndarray) else episode
            self._options[i] = sub_options
            self._reset_one(i, seeds[i])
            infos = self._add_info(infos, self.world.info(self.episodes[i]), i)
        return self._observations(), infos

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        expected = (self.num_envs, *self.single_action_space.shape)
        if actions.shape != expected:
            raise ValueError(
                f"actions must have shape {expected} ({self.interface.action_mode}), got {actions.shape}"
            )
        episodes = self._require_episodes()
        self.world.advance(episodes, actions)
        self._steps += 1
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=np.bool_)
        truncated = np.zeros(self.num_envs, dtype=np.bool_)
        infos: dict[str, Any] = {}
        for i, episode in enumerate(episodes):
            rewards[i], terminated[i], _ = self.world.reward(episode)
            truncated[i] = self.max_episode_steps is not None and self._steps[i] >= self.max_episode_steps
            info = self.world.info(episode)
            if terminated[i] or truncated[i]:
                final = {"final_obs": self.world.observation(episode), "final_info": info}
                infos = self._add_info(infos, final, i)
                self._reset_one(i, None)
                info = self.world.info(self.episodes[i])
            infos = self._add_info(infos, info, i)
        return self._observations(), rewards, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One image per sub-env (``render_view``: frame, prompt or both side by side)."""
        if self.render_mode is None:
            gym.logger.warn("render() needs a render_mode; create the env with render_mode='rgb_array'")
            return None
        return tuple(self.world.render(e, self.render_view) for e in self._require_episodes())

    def close_extras(self, **kwargs: Any) -> None:
        self.world.close()

    # ----------------------------------------------------------------------------------------- accessors
    @property
    def cameras(self) -> list[Camera]:
        """The camera of each sub-env's episode."""
        return [e.camera for e in self._require_episodes()]

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """``name`` of every sub-env: per episode for ``camera``, ``episode``, ``frame``, else shared."""
        if name in _PER_SUB_ENV:
            episodes = self._require_episodes()
            if name == "episode":
                return tuple(episodes)
            return tuple(e.camera if name == "camera" else e.frames[-1].copy() for e in episodes)
        return (getattr(self, name),) * self.num_envs

    def set_attr(self, name: str, values: Any) -> None:
        """Sets a shared attribute; ``values`` is one value or a list of N equal ones (sub-envs share it)."""
        if isinstance(values, list | tuple):
            if len(values) != self.num_envs or any(v is not values[0] and v != values[0] for v in values):
                raise ValueError(f"the sub-envs of a WorldModelVectorEnv share `{name}`: pass one value")
            values = values[0]
        setattr(self, name, values)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Calls method ``name`` once (the sub-envs share one batched implementation), result per sub-env."""
        attribute = getattr(self, name)
        result = attribute(*args, **kwargs) if callable(attribute) else attribute
        return (result,) * self.num_envs

    # ----------------------------------------------------------------------------------------- internals
    def _seed_list(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, int | np.integer):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"`seed` must be an int or a list of {self.num_envs} seeds, got {len(seeds)}")
        return seeds

    def _reset_one(self, i: int, seed: int | None) -> None:
        """Resets sub-env ``i`` as ``gym.Env.reset(seed=seed)`` would reset a single env."""
        if seed is not None:
            self._rngs[i] = seeding.np_random(seed)[0]
        elif self._rngs[i] is None:
            self._rngs[i] = seeding.np_random()[0]
        self.episodes[i] = self.world.new_episode(self._rngs[i], seed, self._options[i])
        self._steps[i] = 0

    def _require_episodes(self) -> list[ImaginedEpisode]:
        missing = [i for i, e in enumerate(self.episodes) if e is None]
        if missing:
            raise gym.error.ResetNeeded(f"sub-envs {missing} were never reset; call reset() first")
        return self.episodes  # type: ignore[return-value]

    def _observations(self) -> Any:
        """Fresh batched observations of every sub-env."""
        observations = [self.world.observation(e) for e in self._require_episodes()]
        space = self.single_observation_space
        return concatenate(space, observations, create_empty_array(space, self.num_envs))
