"""The policy interfaces every policy follows: :class:`Policy`, the optional :class:`BatchPolicy`, and
:class:`PolicyError`, the error that names the policy at fault."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """Maps an observation to an action.

    ``reset`` is called at the start of each episode; ``seed`` re-seeds the policy's own randomness (noise,
    hesitation, sampling), ``None`` continues the current random stream.
    """

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, obs: Any) -> np.ndarray: ...


@runtime_checkable
class BatchPolicy(Protocol):
    """Acts for all ``N`` sub-envs of a vector env in one call (a network predicts a batch at once).

    Optional: a policy may implement it beside :class:`Policy` (``SB3Policy`` does both), and
    :func:`is_batch_policy` tells whether it does. The methods are named apart from ``reset``/``act`` so that
    one object can be both.

    ``reset_batch(seeds)`` starts ``len(seeds)`` episodes at once, one per sub-env, ``seeds[i]`` that of
    sub-env ``i``; ``act_batch(obs)`` takes the vector env's batched observation (an ``(N, ...)`` array, or a
    dict of them) and returns ``(N, *action_shape)`` actions, row ``i`` for sub-env ``i``.
    """

    def reset_batch(self, seeds: list[int]) -> None: ...

    def act_batch(self, obs: Any) -> np.ndarray: ...


def reads_images(policy: object) -> bool:
    """Whether ``policy`` may read the camera image of an observation.

    A policy says it does not with a ``reads_images = False`` attribute (the scripted experts read the state,
    the random policy nothing); any other policy is assumed to read it. Callers that render only for the
    policy's sake may then skip the camera (``vap-env evaluate`` runs such policies on a state-only
    simulator and renders only the frames it scores).
    """
    return bool(getattr(policy, "reads_images", True))


def is_batch_policy(policy: object) -> bool:
    """Whether ``policy`` acts for a whole batch in one call (it has ``reset_batch`` and ``act_batch``)."""
    return isinstance(policy, BatchPolicy)


class PolicyError(ValueError):
    """A policy that cannot be loaded, or that failed while acting; the message starts with its name.

    A ``ValueError``, so the command line reports it as it reports a bad argument. When the policy itself
    raised, the original exception is the ``__cause__``.

    Args:
        name: The policy's name, as reports show it (its spec, or the ``NAME=`` before it).
        message: What went wrong and, where there is one, the fix.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"policy {name!r}: {message}")
        self.name, self.message = name, message
