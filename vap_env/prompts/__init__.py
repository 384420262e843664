"""Visual action prompts: what the world model is conditioned on, rendered from a robot state.

``ActionPrompter`` turns a robot state into a prompt of one kind of the table
:data:`~vap_env.prompts.kinds.PROMPT_KINDS` (the only list of kinds; a new kind is one entry there):

- ``skeleton`` (default): coloured bones, joint dots and gripper fingers, projected through the camera;
- ``depth_skeleton``: the same with depth in bone brightness and width;
- ``mask`` / ``depth``: a robot-only PyBullet render (silhouette, or depth as grey levels) — the paper's
  higher-fidelity mesh/depth prompt (~25 ms a frame);
- ``hull``: the ``depth`` picture drawn from convex pieces of the meshes (:mod:`vap_env.prompts.hull`, 1-3 ms);
- ``state``: the raw joint vector plus gripper (not an image; the model embeds it);
- ``none``: an all-zero image (the no-action baseline keeps the same shapes).

This module stays light (the kind table only: NumPy): the renderers, which import PyBullet and OpenCV, load
on first use, so the torch-free model config can read the table without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vap_env.prompts.kinds import PROMPT_KINDS, PromptKind, prompt_kind

if TYPE_CHECKING:
    from vap_env.prompts.filters import OneEuroFilter, filter_track
    from vap_env.prompts.hand import HandPrompter
    from vap_env.prompts.prompter import ActionPrompter
    from vap_env.prompts.rectify import Rectification, RectificationConfig, estimate_rectification
    from vap_env.prompts.skeleton import DepthSkeletonRenderer, SkeletonRenderer

__all__ = [
    "PROMPT_KINDS",
    "PromptKind",
    "prompt_kind",
    "ActionPrompter",
    "SkeletonRenderer",
    "DepthSkeletonRenderer",
    "HandPrompter",
    "OneEuroFilter",
    "filter_track",
    "Rectification",
    "RectificationConfig",
    "estimate_rectification",
]

_LAZY = {
    "ActionPrompter": "vap_env.prompts.prompter",
    "SkeletonRenderer": "vap_env.prompts.skeleton",
    "DepthSkeletonRenderer": "vap_env.prompts.skeleton",
    "HandPrompter": "vap_env.prompts.hand",
    "OneEuroFilter": "vap_env.prompts.filters",
    "filter_track": "vap_env.prompts.filters",
    "Rectification": "vap_env.prompts.rectify",
    "RectificationConfig": "vap_env.prompts.rectify",
    "estimate_rectification": "vap_env.prompts.rectify",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
