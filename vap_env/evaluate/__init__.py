"""Metrics, policy evaluation and reports.

``from vap_env.evaluate import evaluate`` is the entry (:func:`vap_env.evaluate.runner.evaluate`): a family
of policies, given as specs or as Python objects, in the simulator and in imagination, with the report. It
loads on first use, so that the light modules here (``config``, which the command line reads) import no
torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vap_env.evaluate.config import EvaluateConfig
    from vap_env.evaluate.runner import evaluate

__all__ = ["EvaluateConfig", "evaluate"]

_LAZY = {"evaluate": "vap_env.evaluate.runner", "EvaluateConfig": "vap_env.evaluate.config"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vap_env.evaluate' has no attribute {name!r}")
