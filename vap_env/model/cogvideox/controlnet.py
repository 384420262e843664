"""Conditioning branches of the world model: the CogVideoX ControlNet, the state embedder, the null text.

:class:`CogVideoXControlNet` follows diffusers' SD3 ControlNet: a copy of the base transformer's patch and
time embeddings and of its first ``N`` blocks, plus a trajectory encoder (3D convolutions over the visual
action prompt video, in pixel space) whose tokens are added to the copied patch tokens; every block's
video tokens go through a zero-initialised linear layer and become the residual that
:class:`~vap_env.model.cogvideox.transformer.ControlledCogVideoXTransformer` adds after the same block of the base.
At initialisation the residuals are exactly zero, so base + ControlNet is the base. With ``N = 0`` (the
"LoRA only" ablation) it is the trajectory encoder and one zero-initialised projection alone: the prompt
tokens become the single residual added after base block 0, and the base adapts through its LoRA only.

:class:`StateEmbedding` is the ``state`` prompt kind (raw action/joint vectors added to the timestep
embedding) and :class:`NullTextEmbedding` the learned stand-in for text when there is no text encoder.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import CogVideoXTransformer3DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import CogVideoXPatchEmbed, TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from diffusers.utils import BaseOutput
from torch import Tensor, nn

from vap_env.model.cogvideox.transformer import base_state_dict


@dataclass
class CogVideoXControlNetOutput(BaseOutput):
    """Output of :class:`CogVideoXControlNet`.

    Args:
        controlnet_block_samples: One ``(B, F h w / p^2, inner_dim)`` residual per ControlNet block (one in
            all for a ControlNet of no blocks).
    """

    controlnet_block_samples: tuple[Tensor, ...]


class TrajectoryEncoder(nn.Module):
    """3D convolutions turning a pixel-space prompt video into tokens aligned with the patch tokens.

    Spatially it downsamples by ``spatial_stride`` (= codec spatial factor x patch size) in stride-2 stages;
    temporally it compresses like the codec: frame 0 alone, then groups of ``temporal_stride`` frames (the
    first frame is replicated ``temporal_stride - 1`` times in front, the causal padding of the CogVideoX
    VAE), so ``4k + 1`` prompt frames give ``k + 1`` token frames when the stride is 4.

    Args:
        in_channels: Prompt channels ``Cp``.
        out_channels: Token width (the transformer's ``inner_dim``).
        spatial_stride: Total spatial downsampling.
        temporal_stride: Total temporal downsampling.
        base_channels: Width of the first stage; it doubles at every stride-2 stage, up to 8x.
        unshuffle: A lossless space-to-depth of the prompt frames before the first convolution
            (``pixel_unshuffle``: ``r x r`` pixels become ``r^2`` channels), taking ``r`` of the spatial stride;
            1 convolves the full-resolution frames. At 128x128 the full-resolution 3D convolutions are most
            of a CPU training step; ``r = 4`` keeps every prompt pixel and cuts them by an order of magnitude.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_stride: int,
        temporal_stride: int,
        base_channels: int,
        unshuffle: int = 1,
    ) -> None:
        super().__init__()
        if spatial_stride < 1 or temporal_stride < 1:
            raise ValueError(
                f"strides must be >= 1, got {spatial_stride} (spatial), {temporal_stride} (temporal)"
            )
        if unshuffle < 1 or spatial_stride % unshuffle:
            raise ValueError(
                f"`unshuffle` must be >= 1 and divide the spatial stride {spatial_stride}, got {unshuffle}"
            )
        self.spatial_stride = spatial_stride
        self.temporal_stride = temporal_stride
        self.unshuffle = unshuffle
        first = nn.Conv3d(in_channels * unshuffle**2, base_channels, 3, padding=1)
        layers: list[nn.Module] = [first]
        channels, remaining = base_channels, spatial_stride // unshuffle
        while remaining > 1:
            # stride 2 while it divides, then one stage for whatever odd factor is left
            stride = 2 if remaining % 2 == 0 else remaining
            out = min(channels * 2, base_channels * 8) if stride == 2 else channels
            kernel = (3, 3, 3) if stride == 2 else (3, stride, stride)
            padding = (1, 1, 1) if stride == 2 else (1, 0, 0)
            conv = nn.Conv3d(channels, out, kernel, stride=(1, stride, stride), padding=padding)
            layers += [nn.SiLU(), conv]
            channels, remaining = out, remaining // stride
        self.spatial = nn.Sequential(*layers)
        self.temporal = (
            nn.Conv3d(channels, channels, (temporal_stride, 1, 1), stride=(temporal_stride, 1, 1))
            if temporal_stride > 1
            else None
        )
        self.proj_out = nn.Sequential(nn.SiLU(), nn.Conv3d(channels, out_channels, 1))

    def forward(self, prompt_video: Tensor) -> Tensor:
        """Encodes a prompt video.

        Args:
            prompt_video: ``(B, F, Cp, H, W)`` in ``[-1, 1]``.

        Returns:
            ``(B, F' (H / s) (W / s), out_channels)`` tokens, frame-major then row-major like the patch
            tokens, with ``F' = (F - 1) // temporal_stride + 1``.
        """
        _, num_frames, _, height, width = prompt_video.shape
        s, t = self.spatial_stride, self.temporal_stride
        if height % s or width % s or (num_frames - 1) % t:
            raise ValueError(
                f"prompt video (F={num_frames}, H={height}, W={width}) does not fit strides spatial {s}, "
                f"temporal {t}: H and W must be divisible by {s} and F must be {t}k + 1"
            )
        if self.unshuffle > 1:
            prompt_video = F.pixel_unshuffle(prompt_video, self.unshuffle)
        x = self.spatial(prompt_video.permute(0, 2, 1, 3, 4))  # (B, C, F, h, w)
        if self.temporal is not None:
            x = torch.cat([x[:, :, :1].expand(-1, -1, t - 1, -1, -1), x], dim=2)
            x = self.temporal(x)
        x = self.proj_out(x)
        return x.flatten(3).permute(0, 2, 3, 1).flatten(1, 2)


class CogVideoXControlNet(ModelMixin, ConfigMixin):
    """ControlNet for ``CogVideoXTransformer3DModel``: copies of its embeddings and first blocks.

    The constructor takes the base transformer's own config arguments (so ``from_transformer`` can pass
    them straight through) plus the trajectory-encoder ones; build it with :meth:`from_transformer`.

    With ``num_layers=0`` (adapter mode, the "LoRA only" ablation) it holds only the trajectory encoder and
    one zero-initialised ``inner_dim -> inner_dim`` projection (``controlnet_blocks[0]``): no patch or time
    embedding, since nothing would use them, so every parameter gets a gradient (which DDP wants). Its
    forward returns the projected trajectory tokens as the one residual, which the base adds after block 0;
    it reads neither the text, the timestep nor the RoPE tables.

    Args:
        num_attention_heads: Heads of the copied blocks.
        attention_head_dim: Channels per head.
        in_channels: Input channels of the base (noisy + conditioning latents).
        flip_sin_to_cos: Timestep projection setting of the base.
        freq_shift: Timestep projection setting of the base.
        time_embed_dim: Width of the timestep embedding.
        ofs_embed_dim: Width of the CogVideoX 1.5 offset embedding, ``None`` without.
        text_embed_dim: Width of the text embeddings.
        num_layers: Number of copied blocks ``N``; 0 for adapter mode.
        dropout: Dropout of the blocks.
        attention_bias: Bias in the attention projections.
        sample_width: Latent width the base was trained at (positional embeddings).
        sample_height: Latent height the base was trained at.
        sample_frames: Frames the base was trained at.
        patch_size: Spatial patch size ``p``.
        patch_size_t: Must be ``None`` (CogVideoX 1.0 layout).
        temporal_compression_ratio: Temporal factor of the base's VAE (positional embeddings).
        max_text_seq_length: Text length of the base's sin-cos positional embedding.
        activation_fn: Feed-forward activation.
        timestep_activation_fn: Timestep MLP activation.
        norm_elementwise_affine: LayerNorm affine setting.
        norm_eps: LayerNorm epsilon.
        spatial_interpolation_scale: Sin-cos positional embedding setting.
        temporal_interpolation_scale: Sin-cos positional embedding setting.
        use_rotary_positional_embeddings: Whether the base uses RoPE (then no absolute positions).
        use_learned_positional_embeddings: Whether the base learned its positional embedding.
        patch_bias: Bias in the patch projection.
        prompt_channels: Channels ``Cp`` of the prompt video.
        spatial_stride: Pixels per token side: codec spatial factor x ``patch_size``.
        temporal_stride: Prompt frames per token frame: the codec temporal factor.
        encoder_channels: Base width of the trajectory encoder.
        encoder_unshuffle: Space-to-depth factor of the trajectory encoder's input (see
            :class:`TrajectoryEncoder`); 1 convolves the full-resolution prompt.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 32,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 14,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
        prompt_channels: int = 3,
        spatial_stride: int = 16,
        temporal_stride: int = 4,
        encoder_channels: int = 64,
        encoder_unshuffle: int = 1,
    ) -> None:
        super().__init__()
        if patch_size_t is not None:
            raise ValueError(f"`patch_size_t` must be None (CogVideoX 1.0 layout), got {patch_size_t}")
        if num_layers < 0:
            raise ValueError(f"`num_layers` must be >= 0, got {num_layers}")
        inner_dim = num_attention_heads * attention_head_dim
        self.inner_dim = inner_dim
        adapter = num_layers == 0  # adapter mode builds only what its forward uses
        # 1. Embeddings, as in the base (weights copied by `from_transformer`)
        self.patch_embed = None
        self.time_proj = self.time_embedding = self.ofs_proj = self.ofs_embedding = None
        if not adapter:
            self.patch_embed = CogVideoXPatchEmbed(
                patch_size=patch_size,
                in_channels=in_channels,
                embed_dim=inner_dim,
                text_embed_dim=text_embed_dim,
                bias=patch_bias,
                sample_width=sample_width,
                sample_height=sample_height,
                sample_frames=sample_frames,
                temporal_compression_ratio=temporal_compression_ratio,
                max_text_seq_length=max_text_seq_length,
                spatial_interpolation_scale=spatial_interpolation_scale,
                temporal_interpolation_scale=temporal_interpolation_scale,
                use_positional_embeddings=not use_rotary_positional_embeddings,
                use_learned_positional_embeddings=use_learned_positional_embeddings,
            )
        self.embedding_dropout = nn.Dropout(dropout)
        if not adapter:
            self.time_proj = Timesteps(inner_dim, flip_sin_to_cos, freq_shift)
            self.time_embedding = TimestepEmbedding(inner_dim, time_embed_dim, timestep_activation_fn)
            if ofs_embed_dim:
                self.ofs_proj = Timesteps(ofs_embed_dim, flip_sin_to_cos, freq_shift)
                self.ofs_embedding = TimestepEmbedding(ofs_embed_dim, ofs_embed_dim, timestep_activation_fn)
        # 2. The trajectory encoder, the ControlNet's only new input path
        self.trajectory_encoder = TrajectoryEncoder(
            prompt_channels, inner_dim, spatial_stride, temporal_stride, encoder_channels, encoder_unshuffle
        )
        # 3. Copies of the first blocks and their zero-initialised output projections (adapter mode: one
        # projection of the trajectory tokens)
        self.transformer_blocks = nn.ModuleList(
            [
                CogVideoXBlock(
                    dim=inner_dim,
                    num_attention_heads=num_attention_heads,
                    attention_head_dim=attention_head_dim,
                    time_embed_dim=time_embed_dim,
                    dropout=dropout,
                    activation_fn=activation_fn,
                    attention_bias=attention_bias,
                    norm_elementwise_affine=norm_elementwise_affine,
                    norm_eps=norm_eps,
                )
                for _ in range(num_layers)
            ]
        )
        self.controlnet_blocks = nn.ModuleList(
            [nn.Linear(inner_dim, inner_dim) for _ in range(max(num_layers, 1))]
        )
        for projection in self.controlnet_blocks:
            nn.init.zeros_(projection.weight)
            nn.init.zeros_(projection.bias)
        self.gradient_checkpointing = False

    @classmethod
    def from_transformer(
        cls,
        transformer: CogVideoXTransformer3DModel,
        num_layers: int,
        prompt_channels: int,
        spatial_stride: int,
        temporal_stride: int,
        load_weights_from_transformer: bool = True,
        encoder_channels: int = 64,
        encoder_unshuffle: int = 1,
    ) -> CogVideoXControlNet:
        """Builds a ControlNet for ``transformer``, copying its embeddings and first ``num_layers`` blocks.

        Args:
            transformer: The base (LoRA layers on it, if any, are not copied).
            num_layers: Blocks to copy, at most the base's; 0 copies nothing (adapter mode: trajectory
                encoder and one zero-initialised projection).
            prompt_channels: Channels of the prompt video.
            spatial_stride: Codec spatial factor x patch size.
            temporal_stride: Codec temporal factor.
            load_weights_from_transformer: Copy the weights (else random init, zero output projections).
            encoder_channels: Base width of the trajectory encoder.
            encoder_unshuffle: Space-to-depth factor of the trajectory encoder's input.

        Returns:
            The ControlNet, on the transformer's device and dtype.
        """
        if not 0 <= num_layers <= transformer.config.num_layers:
            raise ValueError(
                f"`num_layers` must be in [0, {transformer.config.num_layers}] for this transformer, "
                f"got {num_layers}"
            )
        accepted = inspect.signature(cls.__init__).parameters
        kwargs: dict[str, Any] = {k: v for k, v in transformer.config.items() if k in accepted}
        kwargs.update(
            num_layers=num_layers,
            prompt_channels=prompt_channels,
            spatial_stride=spatial_stride,
            temporal_stride=temporal_stride,
            encoder_channels=encoder_channels,
            encoder_unshuffle=encoder_unshuffle,
        )
        controlnet = cls(**kwargs)
        if load_weights_from_transformer and num_layers > 0:
            state = base_state_dict(transformer)
            own = controlnet.state_dict()
            copied = {k: v for k, v in state.items() if k in own and not k.startswith("transformer_blocks.")}
            for i in range(num_layers):
                prefix = f"transformer_blocks.{i}."
                copied.update({k: v for k, v in state.items() if k.startswith(prefix)})
            missing = controlnet.load_state_dict(copied, strict=False).missing_keys
            unexpected_missing = [
                k for k in missing if not k.startswith(("trajectory_encoder.", "controlnet_blocks."))
            ]
            if unexpected_missing:
                raise RuntimeError(f"weights not found in the transformer: {unexpected_missing}")
        # nn.Module's cast: diffusers' ModelMixin.to warns about fp32 modules on every dtype argument
        return nn.Module.to(controlnet, device=transformer.device, dtype=transformer.dtype)

    def forward(
        self,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None,
        timestep: int | float | Tensor | None,
        prompt_video: Tensor | None,
        ofs: int | float | Tensor | None = None,
        image_rotary_emb: tuple[Tensor, Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
        trajectory_tokens: Tensor | None = None,
    ) -> CogVideoXControlNetOutput | tuple[tuple[Tensor, ...]]:
        """Computes the per-block residuals for the base transformer.

        Args:
            hidden_states: ``(B, F, C_in, h, w)``, the base's input (in adapter mode only its shape is read).
            encoder_hidden_states: ``(B, L, text_embed_dim)`` text embeddings (unused in adapter mode).
            timestep: ``(B,)`` diffusion timesteps (unused in adapter mode, where it may be ``None``).
            prompt_video: ``(B, F_p, Cp, H, W)`` prompt frames in ``[-1, 1]`` with
                ``F_p = temporal_stride (F - 1) + 1`` and ``H = h x spatial_stride / patch_size``; may be
                ``None`` when ``trajectory_tokens`` are given.
            ofs: Offset embedding input (CogVideoX 1.5 I2V only).
            image_rotary_emb: The base's RoPE tables.
            attention_kwargs: Passed to the attention processors.
            return_dict: Whether to return a :class:`CogVideoXControlNetOutput` instead of a tuple.
            trajectory_tokens: :meth:`encode_prompt` of the prompt video, in its place: a sampler calls the
                ControlNet at every denoising step with the same prompt, whose tokens do not depend on the
                noisy latents nor the timestep, so it encodes the prompt once.

        Returns:
            ``N`` residuals ``(B, F h w / p^2, inner_dim)``; one in adapter mode.
        """
        if trajectory_tokens is None:
            if prompt_video is None:
                raise ValueError("the ControlNet needs `prompt_video` or its `trajectory_tokens`")
            trajectory_tokens = self.encode_prompt(prompt_video, hidden_states.dtype)
        if not self.transformer_blocks:
            return self._adapter_forward(hidden_states, trajectory_tokens, return_dict)
        if timestep is None or encoder_hidden_states is None:
            raise ValueError("a ControlNet with copied blocks needs the timestep and the text embeddings")
        # 1. Time embedding
        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb)
        if self.ofs_embedding is not None:
            emb = emb + self.ofs_embedding(self.ofs_proj(ofs).to(dtype=hidden_states.dtype))

        # 2. Patch embedding plus trajectory tokens
        hidden_states = self.embedding_dropout(self.patch_embed(encoder_hidden_states, hidden_states))
        text_seq_length = encoder_hidden_states.shape[1]
        encoder_hidden_states = hidden_states[:, :text_seq_length]
        hidden_states = hidden_states[:, text_seq_length:]
        trajectory = trajectory_tokens
        if trajectory.shape != hidden_states.shape:
            raise ValueError(
                f"trajectory tokens {tuple(trajectory.shape)} do not match the patch tokens "
                f"{tuple(hidden_states.shape)}: check the prompt video's frames and size"
            )
        hidden_states = hidden_states + trajectory

        # 3. Copied blocks, each read out through its zero-initialised projection
        samples = []
        for block, projection in zip(self.transformer_blocks, self.controlnet_blocks, strict=True):
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
            samples.append(projection(hidden_states))
        if not return_dict:
            return (tuple(samples),)
        return CogVideoXControlNetOutput(controlnet_block_samples=tuple(samples))

    def encode_prompt(self, prompt_video: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """The trajectory tokens of a prompt video (``forward``'s ``prompt_video``), for ``trajectory_tokens``.

        Args:
            prompt_video: ``(B, F_p, Cp, H, W)`` prompt frames in ``[-1, 1]``.
            dtype: The dtype to encode in (the base's hidden states'); the prompt's own when ``None``.

        Returns:
            ``(B, F h w / p^2, inner_dim)`` tokens, aligned with the patch tokens.
        """
        return self.trajectory_encoder(prompt_video if dtype is None else prompt_video.to(dtype))

    def _adapter_forward(
        self, hidden_states: Tensor, trajectory: Tensor, return_dict: bool
    ) -> CogVideoXControlNetOutput | tuple[tuple[Tensor, ...]]:
        """Adapter mode: the trajectory tokens through the one zero-initialised projection."""
        batch_size, num_frames, _, height, width = hidden_states.shape
        p = self.config.patch_size
        expected = (batch_size, num_frames * (height // p) * (width // p), self.inner_dim)
        if tuple(trajectory.shape) != expected:
            raise ValueError(
                f"trajectory tokens {tuple(trajectory.shape)} do not match the patch tokens {expected}: "
                "check the prompt video's frames and size"
            )
        samples = (self.controlnet_blocks[0](trajectory),)
        if not return_dict:
            return (samples,)
        return CogVideoXControlNetOutput(controlnet_block_samples=samples)


class StateEmbedding(nn.Module):
    """The ``state`` prompt: an MLP from the raw action/joint vector sequence to the timestep-embedding width.

    The whole sequence (context and generated frames) is flattened, since CogVideoX has one timestep
    embedding per sample. The last layer starts at zero so that adding it leaves a pretrained base unchanged.

    Args:
        num_frames: Vectors per sequence (context frames + frames per step).
        state_dim: Size ``D`` of one vector; pass roughly unit-scale values (radians, normalised actions).
        embed_dim: Output width (the transformer's ``time_embed_dim``).
        hidden_dim: Hidden width of the MLP.
    """

    def __init__(self, num_frames: int, state_dim: int, embed_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.state_dim = state_dim
        self.mlp = nn.Sequential(
            nn.Linear(num_frames * state_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, embed_dim),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, states: Tensor) -> Tensor:
        """Embeds ``(B, num_frames, D)`` states into ``(B, embed_dim)``."""
        if states.shape[1:] != (self.num_frames, self.state_dim):
            raise ValueError(
                f"states must be (B, {self.num_frames}, {self.state_dim}), got {tuple(states.shape)}"
            )
        return self.mlp(states.flatten(1).to(self.mlp[0].weight.dtype))


class NullTextEmbedding(nn.Module):
    """A learned ``(1, L, text_embed_dim)`` text embedding for a model without a text encoder.

    CogVideoX always attends to text tokens; a world model conditioned on frames and actions has no text,
    so it learns these tokens instead (or starts from precomputed T5 embeddings, see ``from_cogvideox``).

    Args:
        length: Number of tokens ``L``.
        dim: Width (the transformer's ``text_embed_dim``).
        init: Optional ``(1, L, dim)`` starting value; small random otherwise.
    """

    def __init__(self, length: int, dim: int, init: Tensor | None = None) -> None:
        super().__init__()
        if init is not None and init.shape != (1, length, dim):
            raise ValueError(f"`init` must have shape (1, {length}, {dim}), got {tuple(init.shape)}")
        value = init.detach().clone().float() if init is not None else torch.randn(1, length, dim) * 0.02
        self.embedding = nn.Parameter(value)

    def forward(self, batch_size: int) -> Tensor:
        """Returns the ``(batch_size, L, dim)`` embedding (a broadcast view)."""
        return self.embedding.expand(batch_size, -1, -1)
