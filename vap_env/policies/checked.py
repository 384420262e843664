"""Actions checked against the env's action space: :class:`CheckedPolicy` and :class:`CheckedBatchPolicy`.

A user's policy that returns a wrong shape, a NaN or an out-of-range action would otherwise fail deep inside
the simulator or the world model, or be clipped silently into a different policy. The wrapper turns each
into a :class:`~vap_env.policies.base.PolicyError` that names the policy, and re-raises whatever the policy
itself raises the same way, the original as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from vap_env.policies.base import BatchPolicy, Policy, PolicyError, is_batch_policy, reads_images

# Bounds slack: a policy computing exactly 1.0 in float64 may round to 1.0000001 in float32.
ATOL = 1e-6


class CheckedPolicy:
    """A policy whose actions are checked against ``action_space``, and whose failures name it.

    Args:
        policy: The policy to check.
        action_space: The env's (single) action space.
        name: The policy's name, as reports show it.
        atol: How far outside a ``Box``'s bounds an entry may lie (it is then clipped onto them).
    """

    def __init__(self, policy: Policy, action_space: spaces.Space, name: str, atol: float = ATOL) -> None:
        self.policy, self.action_space, self.name, self.atol = policy, action_space, name, float(atol)

    @property
    def reads_images(self) -> bool:
        """The wrapped policy's (:func:`~vap_env.policies.base.reads_images`)."""
        return reads_images(self.policy)

    def reset(self, seed: int | None = None) -> None:
        self._call("reset", self.policy.reset, seed)

    def act(self, obs: Any) -> np.ndarray:
        return check_action(self._call("act", self.policy.act, obs), self.action_space, self.name, self.atol)

    def _call(self, what: str, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except PolicyError:
            raise
        except Exception as e:  # any failure of user code: name the policy, keep the original as cause
            raise PolicyError(self.name, f"{what}() raised {type(e).__name__}: {e}") from e

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.policy!r}, name={self.name!r})"


class CheckedBatchPolicy(CheckedPolicy):
    """A :class:`CheckedPolicy` of a :class:`~vap_env.policies.base.BatchPolicy`: ``act_batch`` is checked too.

    Every row of an ``act_batch`` result is checked as one action; after ``reset_batch(seeds)`` the batch must
    have ``len(seeds)`` rows.
    """

    policy: Any  # a Policy and a BatchPolicy

    def __init__(
        self, policy: BatchPolicy, action_space: spaces.Space, name: str, atol: float = ATOL
    ) -> None:
        super().__init__(policy, action_space, name, atol)  # type: ignore[arg-type]
        self._rows: int | None = None

    def reset_batch(self, seeds: list[int]) -> None:
        self._rows = len(seeds)
        self._call("reset_batch", self.policy.reset_batch, list(seeds))

    def act_batch(self, obs: Any) -> np.ndarray:
        actions = np.asarray(self._call("act_batch", self.policy.act_batch, obs))
        shape = getattr(self.action_space, "shape", None) or ()
        rows = self._rows if self._rows is not None else (actions.shape[0] if actions.ndim else -1)
        if actions.shape != (rows, *shape):
            expected = f"({self._rows if self._rows is not None else 'N'}, {', '.join(map(str, shape))})"
            raise PolicyError(
                self.name,
                f"act_batch() returned actions of shape {actions.shape}, expected {expected}: one row per "
                f"sub-env, each of the action space's shape {shape}",
            )
        return np.stack(
            [check_action(a, self.action_space, self.name, self.atol, row=i) for i, a in enumerate(actions)]
        )


def checked(policy: Policy | BatchPolicy, action_space: spaces.Space, name: str) -> CheckedPolicy:
    """``policy`` wrapped in the checker that fits it (batched or not); a checked policy is re-named only."""
    if isinstance(policy, CheckedPolicy):
        policy = policy.policy
    if is_batch_policy(policy):
        return CheckedBatchPolicy(policy, action_space, name)  # type: ignore[arg-type]
    return CheckedPolicy(policy, action_space, name)  # type: ignore[arg-type]


def check_action(
    action: Any, space: spaces.Space, name: str, atol: float = ATOL, row: int | None = None
) -> np.ndarray:
    """``action`` as an array of ``space``'s dtype, or a :class:`PolicyError` saying how it does not fit.

    A ``Box`` action must have the space's shape, be finite, and lie within the bounds up to ``atol`` (entries
    within ``atol`` outside are clipped onto the bounds); other spaces must ``contain`` it.
    """
    what = "action" if row is None else f"action of row {row}"
    if not isinstance(space, spaces.Box):
        if not space.contains(action):
            raise PolicyError(name, f"{what} {action!r} is not in the env's action space {space}")
        return action
    try:
        array = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise PolicyError(name, f"{what} {action!r} is not an array of numbers ({e})") from e
    if array.shape != space.shape:
        raise PolicyError(
            name,
            f"{what} has shape {array.shape}, expected {space.shape} (the env's action space {space}); "
            "return one action per call, not a batch",
        )
    if not np.all(np.isfinite(array)):
        raise PolicyError(name, f"{what} is not finite: {array}")
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    outside = (array < low - atol) | (array > high + atol)
    if outside.any():
        at = [tuple(int(j) for j in index) for index in np.argwhere(outside)]
        entries = ", ".join(f"[{','.join(map(str, i))}]={array[i]:.6g}" for i in at)
        raise PolicyError(
            name,
            f"{what} lies outside the env's action space at {entries}: bounds low={space.low.tolist()} "
            f"high={space.high.tolist()}; scale or clip the policy's output to them",
        )
    # within atol of the bounds: clip, so the env sees an action its space contains
    return np.clip(array, low, high).astype(space.dtype)
