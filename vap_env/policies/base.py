"""The policy interface every reference policy (and any user policy) follows."""

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
