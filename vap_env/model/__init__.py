"""World models: the backbone seam, the CogVideoX action-to-video model, codecs, sampler, save/load.

- :mod:`~vap_env.model.protocol`: :class:`WorldModel` (what the envs and evaluation see of a backbone) and
  :class:`WorldModelSpec` (what it was trained for);
- :mod:`~vap_env.model.loading`: :func:`load_world_model` (a model, a saved directory or ``"default"``), the
  backbone registry (:func:`register_backbone`: ``config.json`` names the class) and the default model's
  paths;
- :mod:`~vap_env.model.cogvideox`: the CogVideoX backbone, :class:`ActionToVideoModel`;
- ``codec``, ``sampler``, ``checkpoint``, ``config``: the parts any backbone may share.

``from vap_env.model import ActionToVideoModel, WorldModelConfig`` is the usual entry. The names load on
first use, so that light modules (``vap_env.model.config``, ``loading``, ``protocol``) import no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vap_env.model.codec import Codec, CogVideoXVAECodec, FrameAutoencoder, PixelCodec, load_codec
    from vap_env.model.cogvideox.model import ActionToVideoModel
    from vap_env.model.config import WorldModelConfig
    from vap_env.model.loading import (
        default_model_path,
        default_segmenter_path,
        load_world_model,
        register_backbone,
    )
    from vap_env.model.protocol import WorldModel, WorldModelSpec

__all__ = [
    "ActionToVideoModel",
    "WorldModel",
    "WorldModelConfig",
    "WorldModelSpec",
    "Codec",
    "PixelCodec",
    "FrameAutoencoder",
    "CogVideoXVAECodec",
    "default_model_path",
    "default_segmenter_path",
    "load_codec",
    "load_world_model",
    "register_backbone",
]

_LAZY = {
    "ActionToVideoModel": "vap_env.model.cogvideox.model",
    "WorldModel": "vap_env.model.protocol",
    "WorldModelSpec": "vap_env.model.protocol",
    "WorldModelConfig": "vap_env.model.config",
    "Codec": "vap_env.model.codec",
    "PixelCodec": "vap_env.model.codec",
    "FrameAutoencoder": "vap_env.model.codec",
    "CogVideoXVAECodec": "vap_env.model.codec",
    "load_codec": "vap_env.model.codec",
    "default_model_path": "vap_env.model.loading",
    "default_segmenter_path": "vap_env.model.loading",
    "load_world_model": "vap_env.model.loading",
    "register_backbone": "vap_env.model.loading",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vap_env.model' has no attribute {name!r}")
