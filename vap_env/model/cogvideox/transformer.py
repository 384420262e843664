"""The base diffusion transformer: diffusers' CogVideoX transformer with inputs for control signals.

``diffusers.CogVideoXTransformer3DModel`` has no input for ControlNet residuals nor for an extra
conditioning embedding. :class:`ControlledCogVideoXTransformer` adds both to ``forward`` and nothing
else, so it loads every CogVideoX checkpoint unchanged and equals the stock model exactly when the extras
are ``None``. :func:`rotary_embedding` builds the RoPE tables as the CogVideoX pipelines do,
:func:`base_state_dict` gives the plain weights of a transformer that carries peft LoRA layers (what
:func:`save_transformer` writes), and :func:`add_image_conditioning_channels` turns a text-to-video
checkpoint into an image-to-video one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.configuration_utils import FrozenDict
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video import get_resize_crop_region_for_grid
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME, apply_lora_scale
from safetensors.torch import save_file
from torch import Tensor


class ControlledCogVideoXTransformer(CogVideoXTransformer3DModel):
    """``CogVideoXTransformer3DModel`` whose ``forward`` also takes ControlNet residuals and a time embedding.

    The constructor, weights and config are the stock ones (``from_pretrained`` reads any CogVideoX
    ``transformer/`` folder). CogVideoX 1.5 checkpoints (``patch_size_t`` set) are not supported by the rest
    of vap-env, but this class itself handles them as the stock model does.
    """

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor,
        timestep: int | float | Tensor,
        timestep_cond: Tensor | None = None,
        ofs: int | float | Tensor | None = None,
        image_rotary_emb: tuple[Tensor, Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        controlnet_block_samples: list[Tensor] | tuple[Tensor, ...] | None = None,
        controlnet_conditioning_scale: float | Tensor = 1.0,
        added_time_embedding: Tensor | None = None,
        return_dict: bool = True,
    ) -> tuple[Tensor] | Transformer2DModelOutput:
        """Predicts the denoising target of a noisy latent video.

        Args:
            hidden_states: ``(B, F, C_in, h, w)`` noisy latents (with conditioning channels for I2V models).
            encoder_hidden_states: ``(B, L, text_embed_dim)`` text embeddings.
            timestep: ``(B,)`` diffusion timesteps (or a scalar).
            timestep_cond: Optional ``(B, time_embed_dim)`` condition of the stock timestep embedding.
            ofs: Offset embedding input of CogVideoX 1.5 I2V.
            image_rotary_emb: ``(cos, sin)`` RoPE tables of shape ``(F h w / p^2, head_dim)`` each.
            attention_kwargs: Passed to the attention processors; ``{"scale": s}`` scales LoRA layers.
            controlnet_block_samples: ``N`` tensors ``(B, F h w / p^2, inner_dim)``; sample ``i`` times
                ``controlnet_conditioning_scale`` is added to the video tokens after block ``i`` (as SD3's and
                Flux's ControlNets do). ``N`` may be smaller than the number of blocks.
            controlnet_conditioning_scale: A float, or a ``(B,)`` tensor to switch control per sample (0
                turns it off for that sample: the unconditional branch of classifier-free guidance).
            added_time_embedding: ``(B, time_embed_dim)`` added to the timestep embedding (the state prompt).
            return_dict: Whether to return a ``Transformer2DModelOutput`` instead of a tuple.

        Returns:
            ``(B, F, C_out, h, w)`` prediction, in a ``Transformer2DModelOutput`` or a 1-tuple.
        """
        batch_size, num_frames, _, height, width = hidden_states.shape
        if controlnet_block_samples is not None and len(controlnet_block_samples) > len(
            self.transformer_blocks
        ):
            raise ValueError(
                f"got {len(controlnet_block_samples)} ControlNet block samples for "
                f"{len(self.transformer_blocks)} transformer blocks"
            )
        control_scale = controlnet_conditioning_scale
        if isinstance(control_scale, Tensor) and control_scale.ndim == 1:
            control_scale = control_scale.to(hidden_states.dtype)[:, None, None]

        # 1. Time embedding (the stock computation, plus the extra embedding)
        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)
        if self.ofs_embedding is not None:
            emb = emb + self.ofs_embedding(self.ofs_proj(ofs).to(dtype=hidden_states.dtype))
        if added_time_embedding is not None:
            emb = emb + added_time_embedding.to(emb.dtype)

        # 2. Patch embedding
        hidden_states = self.embedding_dropout(self.patch_embed(encoder_hidden_states, hidden_states))
        text_seq_length = encoder_hidden_states.shape[1]
        encoder_hidden_states = hidden_states[:, :text_seq_length]
        hidden_states = hidden_states[:, text_seq_length:]

        # 3. Transformer blocks, each followed by its ControlNet residual
        for i, block in enumerate(self.transformer_blocks):
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states, encoder_hidden_states = self._gradient_checkpointing_func(
                    block, hidden_states, encoder_hidden_states, emb, image_rotary_emb, attention_kwargs
                )
            else:
                hidden_states, encoder_hidden_states = block(
                    hidden_states=hidden_states,
                    encoder_hidden_states=encoder_hidden_states,
                    temb=emb,
                    image_rotary_emb=image_rotary_emb,
                    attention_kwargs=attention_kwargs,
                )
            if controlnet_block_samples is not None and i < len(controlnet_block_samples):
                hidden_states = hidden_states + controlnet_block_samples[i] * control_scale

        # 4. Final block (norm_final applies to the video tokens only, as in diffusers >= 0.32)
        hidden_states = self.norm_final(hidden_states)
        hidden_states = self.proj_out(self.norm_out(hidden_states, temb=emb))

        # 5. Unpatchify
        output = unpatchify(hidden_states, self.config, batch_size, num_frames, height, width)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)


def unpatchify(
    tokens: Tensor, config: FrozenDict, batch_size: int, num_frames: int, height: int, width: int
) -> Tensor:
    """Turns output tokens back into a latent video, exactly as ``CogVideoXTransformer3DModel`` does.

    Args:
        tokens: ``(B, F h w / p^2, p^2 C)`` output tokens (``p_t p^2 C`` for CogVideoX 1.5).
        config: The transformer config (``patch_size``, ``patch_size_t``).
        batch_size: ``B``.
        num_frames: Latent frames ``F`` of the input.
        height: Latent height ``h``.
        width: Latent width ``w``.

    Returns:
        ``(B, F, C, h, w)``.
    """
    p, p_t = config.patch_size, config.patch_size_t
    if p_t is None:
        output = tokens.reshape(batch_size, num_frames, height // p, width // p, -1, p, p)
        return output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
    output = tokens.reshape(batch_size, (num_frames + p_t - 1) // p_t, height // p, width // p, -1, p_t, p, p)
    return output.permute(0, 1, 5, 4, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(1, 2)


def rotary_embedding(
    config: FrozenDict, latent_height: int, latent_width: int, num_latent_frames: int, device: torch.device
) -> tuple[Tensor, Tensor] | None:
    """The RoPE tables of a latent video, as CogVideoX pipelines' ``_prepare_rotary_positional_embeddings``.

    The pipelines take pixel sizes and divide by the VAE factor; this takes the latent grid directly, so it
    serves every codec.

    Args:
        config: The transformer config.
        latent_height: Latent height ``h``.
        latent_width: Latent width ``w``.
        num_latent_frames: Latent frames ``F``.
        device: Where to build the tables.

    Returns:
        ``(cos, sin)``, each ``(F h w / p^2, attention_head_dim)``, or ``None`` when the model does not use
        rotary embeddings.
    """
    if not config.use_rotary_positional_embeddings:
        return None
    p, p_t = config.patch_size, config.patch_size_t
    grid_height, grid_width = latent_height // p, latent_width // p
    base_size_width, base_size_height = config.sample_width // p, config.sample_height // p
    if p_t is None:
        grid_crops_coords = get_resize_crop_region_for_grid(
            (grid_height, grid_width), base_size_width, base_size_height
        )
        return get_3d_rotary_pos_embed(
            embed_dim=config.attention_head_dim,
            crops_coords=grid_crops_coords,
            grid_size=(grid_height, grid_width),
            temporal_size=num_latent_frames,
            device=device,
        )
    return get_3d_rotary_pos_embed(
        embed_dim=config.attention_head_dim,
        crops_coords=None,
        grid_size=(grid_height, grid_width),
        temporal_size=(num_latent_frames + p_t - 1) // p_t,
        grid_type="slice",
        max_size=(base_size_height, base_size_width),
        device=device,
    )


def base_state_dict(module: torch.nn.Module) -> dict[str, Tensor]:
    """The plain (non-LoRA) weights of a module that may carry peft LoRA layers.

    peft wraps each adapted linear as ``<name>.base_layer`` plus ``lora_A``/``lora_B``; the plain model's
    keys are ``<name>.weight``. This drops the LoRA tensors and undoes the renaming, so the result loads
    into an unadapted model (and is what ``transformer/`` holds on disk).

    Args:
        module: Any module, adapted or not.

    Returns:
        The state dict with plain keys (tensors shared with the module, not copied).
    """
    state = {}
    for key, value in module.state_dict().items():
        if ".lora_" in key:
            continue
        state[key.replace(".base_layer.", ".")] = value
    return state


def add_image_conditioning_channels(
    transformer: ControlledCogVideoXTransformer,
) -> ControlledCogVideoXTransformer:
    """A copy of a text-to-video transformer with zero-weighted extra input channels for the image latents."""
    config = dict(transformer.config)
    config["in_channels"] = 2 * transformer.config.in_channels
    expanded = ControlledCogVideoXTransformer.from_config(config)
    state = transformer.state_dict()
    weight = state["patch_embed.proj.weight"]  # (D, C, p, p) Conv2d
    state["patch_embed.proj.weight"] = torch.cat([weight, torch.zeros_like(weight)], dim=1)
    expanded.load_state_dict(state)
    return torch.nn.Module.to(expanded, device=transformer.device, dtype=transformer.dtype)  # no fp32 warning


def save_transformer(transformer: ControlledCogVideoXTransformer, directory: Path) -> None:
    """Writes the plain (LoRA-free) transformer as a stock ``CogVideoXTransformer3DModel`` folder."""
    directory.mkdir(parents=True)
    transformer.save_config(directory)
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text())
    config["_class_name"] = "CogVideoXTransformer3DModel"  # loadable by stock diffusers code too
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True))
    state = {k: v.detach().contiguous() for k, v in base_state_dict(transformer).items()}
    save_file(state, directory / SAFETENSORS_WEIGHTS_NAME)
