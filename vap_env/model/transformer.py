"""Alias of :mod:`vap_env.model.cogvideox.transformer`, for code written before the move; goes once its
importers move."""

from vap_env.model.cogvideox.transformer import (
    ControlledCogVideoXTransformer,
    add_image_conditioning_channels,
    base_state_dict,
    rotary_embedding,
    save_transformer,
)

__all__ = [
    "ControlledCogVideoXTransformer",
    "add_image_conditioning_channels",
    "base_state_dict",
    "rotary_embedding",
    "save_transformer",
]
