"""Uniformly random actions: the bottom of the graded policy family."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class RandomPolicy:
    """Samples actions uniformly from a Box action space, ignoring the observation.

    Args:
        action_space: The env's action space (a bounded ``Box``), or the env itself (so the class is a
            policy class ``(env) -> Policy``, as ``py:vap_env.policies.random_policy:RandomPolicy`` names it).
        seed: Seed of the policy's generator.
    """

    def __init__(self, action_space: spaces.Box | gym.Env, seed: int | None = None) -> None:
        if not isinstance(action_space, spaces.Space):
            action_space = getattr(action_space, "action_space", action_space)
        if not isinstance(action_space, spaces.Box) or not action_space.is_bounded():
            raise ValueError(f"RandomPolicy needs a bounded Box action space, got {action_space}")
        self.action_space = action_space
        self._seed = seed
        self._rng = np.random.default_rng(seed)

    reads_images = False  # it ignores the observation (:func:`~vap_env.policies.base.reads_images`)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def act(self, obs: Any) -> np.ndarray:
        low, high = self.action_space.low, self.action_space.high
        return self._rng.uniform(low, high).astype(self.action_space.dtype)
