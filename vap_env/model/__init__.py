"""The action-to-video world model: codecs, transformer, ControlNet, LoRA, sampler, save/load.

``from vap_env.model import ActionToVideoModel, WorldModelConfig`` is the usual entry; the submodules hold
the parts (``codec``, ``transformer``, ``controlnet``, ``sampler``, ``checkpoint``).
"""

from vap_env.model.codec import Codec, CogVideoXVAECodec, FrameAutoencoder, PixelCodec, load_codec
from vap_env.model.config import WorldModelConfig
from vap_env.model.world_model import ActionToVideoModel

__all__ = ["ActionToVideoModel", "WorldModelConfig", "Codec", "PixelCodec", "FrameAutoencoder",
           "CogVideoXVAECodec", "load_codec"]
