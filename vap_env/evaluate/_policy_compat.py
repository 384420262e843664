"""A minimal stand-in for the policy-source API that ``vap_env.policies`` is getting (delete on merge).

The evaluation is written against ``vap_env.policies.as_policy``, ``BatchPolicy``, ``is_batched``,
``split_named`` and ``PolicyError``; until those land, :mod:`vap_env.evaluate.policy_runs` imports them from
here. This stand-in checks nothing: it builds the policy and returns it unwrapped.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from vap_env.policies import Policy, make_policy


class PolicyError(RuntimeError):
    """A policy that could not be built or that misbehaved while acting.

    Args:
        name: The policy's name in the evaluation.
        message: What went wrong.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"policy {name!r}: {message}")
        self.name = name


@runtime_checkable
class BatchPolicy(Protocol):
    """Acts for a batch of episodes at once: row ``i`` is episode ``i``, reset with ``seeds[i]``."""

    def reset(self, seeds: list[int]) -> None: ...

    def act_batch(self, obs_batch: Any) -> np.ndarray: ...


def is_batched(policy: Any) -> bool:
    """Whether ``policy`` follows :class:`BatchPolicy` (has ``act_batch``)."""
    return hasattr(policy, "act_batch")


def as_policy(source: Any, env: Any, name: str | None = None) -> Policy:
    """A spec through ``make_policy``, a class or factory called with ``env``, an object as it is."""
    if isinstance(source, str):
        return make_policy(source, env)
    if hasattr(source, "act") and not isinstance(source, type):
        return source
    if callable(source):
        return source(env)
    raise PolicyError(name or repr(source), f"not a spec, a policy, a class or a factory: {source!r}")


def split_named(text: str) -> tuple[str | None, str]:
    """``"mine=sb3:x.zip"`` -> ``("mine", "sb3:x.zip")``; a ``=`` after the first ``:`` names nothing."""
    name, sep, spec = text.partition("=")
    if not sep or ":" in name or not name.strip():
        return None, text.strip()
    return name.strip(), spec.strip()
