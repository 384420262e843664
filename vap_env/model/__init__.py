"""The action-to-video world model: codecs, transformer, ControlNet, LoRA, sampler, save/load.

``from vap_env.model import ActionToVideoModel, WorldModelConfig`` is the usual entry; the submodules hold
the parts (``codec``, ``transformer``, ``controlnet``, ``sampler``, ``checkpoint``). The names load on first
use, so that light modules (``vap_env.model.config``, which the command line reads) import no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vap_env.model.codec import Codec, CogVideoXVAECodec, FrameAutoencoder, PixelCodec, load_codec
    from vap_env.model.config import WorldModelConfig
    from vap_env.model.world_model import ActionToVideoModel

__all__ = [
    "ActionToVideoModel",
    "WorldModelConfig",
    "Codec",
    "PixelCodec",
    "FrameAutoencoder",
    "CogVideoXVAECodec",
    "load_codec",
]

_LAZY = {
    "ActionToVideoModel": "vap_env.model.world_model",
    "WorldModelConfig": "vap_env.model.config",
    "Codec": "vap_env.model.codec",
    "PixelCodec": "vap_env.model.codec",
    "FrameAutoencoder": "vap_env.model.codec",
    "CogVideoXVAECodec": "vap_env.model.codec",
    "load_codec": "vap_env.model.codec",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vap_env.model' has no attribute {name!r}")
