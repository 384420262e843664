"""The action-to-video world model: codec + CogVideoX transformer + ControlNet + LoRA + scheduler.

:class:`ActionToVideoModel` predicts the next frames of a video from its last frame(s) and a visual action
prompt, as in "Precise Action-to-Video Generation Through Visual Action Prompts" (arXiv 2508.13104). The
context latents condition the transformer image-to-video style (concatenated on channels, zero over the
frames to generate); the prompt video drives a ControlNet branch (or, for the ``state`` kind, an embedding
added to the timestep embedding). The same code trains a tiny model from scratch on a CPU
(``WorldModelConfig.tiny()``) and fine-tunes a full CogVideoX-I2V checkpoint read from a local diffusers
directory (:meth:`ActionToVideoModel.from_cogvideox`).

Sequence layout: ``Tc`` context frames then ``Tf`` generated frames, encoded together into ``Tc' + Tf'``
latent frames (``Tc' = (Tc - 1) / f + 1``, ``Tf' = Tf / f`` for codec temporal factor ``f``). The noisy
channels hold the whole sequence at one noise level; the context part is the noised context in training
and is replaced by it at every sampling step, and the loss covers the generated part only. Trainers with a
frozen codec encode clips once (:meth:`ActionToVideoModel.encode_clip`) and train on the cached latents
(:meth:`ActionToVideoModel.latent_training_loss`).

The config records the fingerprint of the codec
(:func:`~vap_env.model.checkpoint.module_fingerprint`), so a saved model refuses to load with another
codec. The config lives in :mod:`vap_env.model.config` (and is re-exported here), the file helpers in
:mod:`vap_env.model.checkpoint`.

Conditioning ablations (see :class:`WorldModelConfig`): ControlNet + LoRA (the default), ControlNet only
(``lora_rank=0``) and LoRA only (``controlnet_layers=0``: the prompt tokens reach the base through one
zero-initialised projection). :meth:`ActionToVideoModel.from_pretrained_base` attaches any of them, or
another prompt kind, to the base of one saved ``pretrain`` model.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import CogVideoXDDIMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict
from torch import Tensor, nn

from vap_env.model.checkpoint import (
    atomic_directory,
    check_model_weights,
    load_weights_file,
    module_fingerprint,
    save_weights_file,
)
from vap_env.model.codec import Codec, CogVideoXVAECodec, PixelCodec, load_codec
from vap_env.model.config import (
    ATTACHMENT_FIELDS,
    IMAGE_PROMPT_KINDS,
    PROMPT_KINDS,
    STAGES,
    WorldModelConfig,
)
from vap_env.model.controlnet import CogVideoXControlNet, NullTextEmbedding, StateEmbedding
from vap_env.model.sampler import default_scheduler, sample_latents
from vap_env.model.transformer import (
    ControlledCogVideoXTransformer,
    add_image_conditioning_channels,
    rotary_embedding,
    save_transformer,
)

__all__ = [
    "ATTACHMENT_FIELDS",
    "PROMPT_KINDS",
    "STAGES",
    "ActionToVideoModel",
    "WorldModelConfig",
    "load_config",
]

LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
LORA_WEIGHTS = "lora/pytorch_lora_weights.safetensors"
EXTRAS_WEIGHTS = "extras.safetensors"
CONFIG_FILE = "config.json"


class ActionToVideoModel(nn.Module):
    """Codec + controlled CogVideoX transformer + ControlNet/state embedder + null text + scheduler.

    Args:
        config: The configuration.
        codec: Frames <-> latents; a :class:`PixelCodec` when ``None``. Always frozen. When
            ``config.codec_fingerprint`` is set (the config of a trained model), the codec must have that
            fingerprint; otherwise the codec's fingerprint is written into the model's config.
        transformer: A base transformer to use (``in_channels`` = 2 x codec latent channels, without LoRA);
            built from ``config`` when ``None``.
        controlnet: A ControlNet to use; built from the transformer when ``None`` and the prompt is an image.
        scheduler: The diffusion scheduler; :func:`~vap_env.model.sampler.default_scheduler` when ``None``.
        null_text_init: ``(1, L, text_embed_dim)`` initial null text embedding (e.g. precomputed T5 tokens).
    """

    def __init__(
        self,
        config: WorldModelConfig,
        codec: Codec | None = None,
        transformer: ControlledCogVideoXTransformer | None = None,
        controlnet: CogVideoXControlNet | None = None,
        scheduler: SchedulerMixin | None = None,
        null_text_init: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = dataclasses.replace(config)  # a copy: `set_stage` writes the stage into it
        self.codec = (codec or PixelCodec()).eval().requires_grad_(False)
        fingerprint = module_fingerprint(self.codec)
        if config.codec_fingerprint not in (None, fingerprint):
            raise ValueError(
                f"the weights were trained with codec {config.codec_fingerprint}, but the codec given is "
                f"{fingerprint} ({type(self.codec).__name__}): latents of another codec mean nothing to them"
            )
        self.config.codec_fingerprint = fingerprint
        self.scheduler = scheduler or default_scheduler()
        f, s = self.codec.temporal_factor, self.codec.spatial_factor
        height, width = config.image_size
        if height % (s * config.patch_size) or width % (s * config.patch_size):
            raise ValueError(
                f"`image_size` {config.image_size} must be divisible by codec spatial factor x patch size "
                f"= {s * config.patch_size}"
            )
        if (config.context_frames - 1) % f or config.frames_per_step % f:
            raise ValueError(
                f"the codec compresses time {f}x: `context_frames` must be {f}k + 1 and `frames_per_step` a "
                f"multiple of {f}, got {config.context_frames} and {config.frames_per_step}"
            )
        self.num_context_latents = (config.context_frames - 1) // f + 1
        self.num_target_latents = config.frames_per_step // f
        if (
            isinstance(self.codec, CogVideoXVAECodec)
            and (self.num_context_latents + self.num_target_latents) % 2 == 0
        ):
            # its decoder upsamples time by splitting off frame 0 only for odd latent counts: an even count
            # decodes into 8k frames instead of 4(2k - 1) + 1
            raise ValueError(
                "the CogVideoX VAE decodes only an odd number of latent frames: context_frames + "
                f"frames_per_step must be 8k + 1, got {config.context_frames + config.frames_per_step}"
            )
        self.latent_size = (height // s, width // s)
        self.transformer = transformer or self._build_transformer()
        self._check_transformer()
        self.controlnet = controlnet
        if config.prompt in IMAGE_PROMPT_KINDS and controlnet is None:
            self.controlnet = CogVideoXControlNet.from_transformer(
                self.transformer,
                config.controlnet_layers,
                config.prompt_channels,
                spatial_stride=s * config.patch_size,
                temporal_stride=f,
                encoder_channels=config.controlnet_encoder_channels,
            )
        self.state_embedder = None
        if config.prompt == "state":
            num_frames = config.context_frames + config.frames_per_step
            self.state_embedder = StateEmbedding(
                num_frames, config.state_dim, config.time_embed_dim, config.state_hidden_dim
            ).to(self.transformer.device)
        self.null_text = NullTextEmbedding(config.text_length, config.text_embed_dim, null_text_init)
        self.null_text.to(device=self.transformer.device, dtype=self.transformer.dtype)
        if config.lora_rank > 0:
            # after the ControlNet copied the blocks, so that it gets plain weights
            self.transformer.add_adapter(
                LoraConfig(
                    r=config.lora_rank,
                    lora_alpha=config.lora_alpha,
                    target_modules=LORA_TARGET_MODULES,
                    init_lora_weights=True,
                )
            )
        self.set_stage(config.stage)

    def _build_transformer(self) -> ControlledCogVideoXTransformer:
        c, f = self.config, self.codec.temporal_factor
        num_latents = self.num_context_latents + self.num_target_latents
        return ControlledCogVideoXTransformer(
            num_attention_heads=c.num_attention_heads,
            attention_head_dim=c.attention_head_dim,
            in_channels=2 * self.codec.latent_channels,
            out_channels=self.codec.latent_channels,
            time_embed_dim=c.time_embed_dim,
            text_embed_dim=c.text_embed_dim,
            num_layers=c.num_layers,
            sample_height=self.latent_size[0],
            sample_width=self.latent_size[1],
            sample_frames=(num_latents - 1) * f + 1,
            patch_size=c.patch_size,
            temporal_compression_ratio=f,
            max_text_seq_length=c.text_length,
            use_rotary_positional_embeddings=c.use_rotary_positional_embeddings,
            use_learned_positional_embeddings=c.use_learned_positional_embeddings,
        )

    def _check_transformer(self) -> None:
        tc, c = self.transformer.config, self.config
        if tc.patch_size_t is not None or tc.ofs_embed_dim:
            raise ValueError("CogVideoX 1.5 transformers (`patch_size_t`, `ofs_embed_dim`) are not supported")
        expected = {
            "in_channels": 2 * self.codec.latent_channels,
            "out_channels": self.codec.latent_channels,
            "patch_size": c.patch_size,
            "text_embed_dim": c.text_embed_dim,
            "num_layers": c.num_layers,
            "time_embed_dim": c.time_embed_dim,
        }
        wrong = {k: (tc[k], v) for k, v in expected.items() if tc[k] != v}
        if wrong:
            raise ValueError(f"transformer config does not fit (found, expected): {wrong}")
        absolute = not tc.use_rotary_positional_embeddings or tc.use_learned_positional_embeddings
        if absolute and c.text_length != tc.max_text_seq_length:
            raise ValueError(
                f"`text_length` must equal the transformer's max_text_seq_length {tc.max_text_seq_length} "
                f"with absolute positional embeddings, got {c.text_length}"
            )
        if tc.use_learned_positional_embeddings and self.latent_size != (tc.sample_height, tc.sample_width):
            raise ValueError(
                f"the transformer learned positions for a {tc.sample_height}x{tc.sample_width} latent grid; "
                f"`image_size` {c.image_size} gives {self.latent_size}"
            )

    # ------------------------------------------------------------------ stages and parameters

    def set_stage(self, stage: str) -> None:
        """Sets which parameters train.

        Args:
            stage: ``pretrain``: the base transformer (and null text) train, without conditioning;
                ``control``: the base is frozen, ControlNet + LoRA + state embedder + null text train;
                ``joint``: everything but the codec trains (small models from scratch).
        """
        if stage not in STAGES:
            raise ValueError(f"`stage` must be one of {list(STAGES)}, got {stage!r}")
        self.config.stage = stage
        parts = self._parts()
        trainable = {
            "pretrain": ("base",),
            "control": ("lora", "controlnet", "other"),
            "joint": ("base", "lora", "controlnet", "other"),
        }[stage]
        for name, params in parts.items():
            for param in params:
                param.requires_grad_(name in trainable)
        if stage == "pretrain":
            self.null_text.requires_grad_(True)

    def recopy_controlnet(self) -> None:
        """Replaces the ControlNet by a fresh copy of the base transformer's first blocks, as they are now.

        The ControlNet is a copy of the first ``controlnet_layers`` base blocks made when the model is built;
        after a ``pretrain`` stage has trained the base, the ``control`` stage should start from a copy of
        the trained blocks (with a new trajectory encoder and zero-initialised output projections, so that
        the model's output is unchanged), as the paper's ControlNet starts from the pretrained CogVideoX.
        With ``controlnet_layers=0`` there is nothing to copy: the trajectory encoder and its projection
        are simply new. Parameters train as the current stage says.
        """
        if self.controlnet is None:
            raise ValueError(f"prompt kind {self.config.prompt!r} has no ControlNet to copy")
        c, f, s = self.config, self.codec.temporal_factor, self.codec.spatial_factor
        self.controlnet = CogVideoXControlNet.from_transformer(
            self.transformer,
            c.controlnet_layers,
            c.prompt_channels,
            spatial_stride=s * c.patch_size,
            temporal_stride=f,
            encoder_channels=c.controlnet_encoder_channels,
        )
        self.set_stage(c.stage)

    def _parts(self) -> dict[str, list[nn.Parameter]]:
        base, lora = [], []
        for name, param in self.transformer.named_parameters():
            (lora if ".lora_" in name else base).append(param)
        other = list(self.null_text.parameters())
        if self.state_embedder is not None:
            other += list(self.state_embedder.parameters())
        controlnet = list(self.controlnet.parameters()) if self.controlnet is not None else []
        return {"base": base, "lora": lora, "controlnet": controlnet, "other": other}

    def trainable_parameters_report(self) -> dict[str, int]:
        """Trainable parameter counts per part: ``base``, ``lora``, ``controlnet``, ``other``."""
        return {
            name: sum(p.numel() for p in params if p.requires_grad) for name, params in self._parts().items()
        }

    def train(self, mode: bool = True) -> ActionToVideoModel:
        """Sets training mode on every part but the codec, which stays in eval mode."""
        super().train(mode)
        self.codec.eval()
        return self

    @property
    def device(self) -> torch.device:
        """Device of the transformer."""
        return self.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the transformer."""
        return self.transformer.dtype

    # ------------------------------------------------------------------ the model

    def _predict(
        self,
        model_input: Tensor,
        timesteps: Tensor,
        text: Tensor,
        prompts: Tensor | None,
        control_scale: Tensor,
        rotary: tuple[Tensor, Tensor] | None,
    ) -> Tensor:
        """Base prediction with the control signal scaled per row; the ControlNet skips rows with scale 0."""
        samples, added = None, None
        active = control_scale != 0
        if self.controlnet is not None and prompts is not None and bool(active.any()):
            rows = active.nonzero().squeeze(1)
            run_all = bool(active.all())
            part = self.controlnet(
                model_input if run_all else model_input[rows],
                text if run_all else text[rows],
                timesteps if run_all else timesteps[rows],
                prompts if run_all else prompts[rows],
                image_rotary_emb=rotary,
            ).controlnet_block_samples
            samples = (
                part
                if run_all
                else [s.new_zeros(model_input.shape[0], *s.shape[1:]).index_copy(0, rows, s) for s in part]
            )
        if self.state_embedder is not None and prompts is not None:
            added = self.state_embedder(prompts) * control_scale[:, None].to(self.dtype)
        return self.transformer(
            model_input,
            text,
            timesteps,
            image_rotary_emb=rotary,
            controlnet_block_samples=samples,
            controlnet_conditioning_scale=control_scale,
            added_time_embedding=added,
            return_dict=False,
        )[0]

    def _text(self, batch_size: int, text_embeds: Tensor | None) -> Tensor:
        if text_embeds is None:
            return self.null_text(batch_size)
        if text_embeds.ndim != 3 or text_embeds.shape[-1] != self.config.text_embed_dim:
            raise ValueError(
                f"`text_embeds` must be (B or 1, L, {self.config.text_embed_dim}), "
                f"got {tuple(text_embeds.shape)}"
            )
        return text_embeds.to(self.device, self.dtype).expand(batch_size, -1, -1)

    def _check_frames(self, frames: Tensor, num_frames: int, name: str) -> None:
        expected = (num_frames, 3, *self.config.image_size)
        if frames.ndim != 5 or tuple(frames.shape[1:]) != expected:
            raise ValueError(
                f"`{name}` must be (B, {', '.join(map(str, expected))}), got {tuple(frames.shape)}"
            )

    def _check_prompts(self, prompts: Tensor | None, batch_size: int) -> Tensor | None:
        """Validates the prompts; returns them on the model's device (``None`` for the ``none`` kind)."""
        c = self.config
        if c.prompt == "none":
            return None
        num_frames = c.context_frames + c.frames_per_step
        if c.prompt == "state":
            expected: tuple[int, ...] = (batch_size, num_frames, c.state_dim)
        else:
            expected = (batch_size, num_frames, c.prompt_channels, *c.image_size)
        if prompts is None or tuple(prompts.shape) != expected:
            found = None if prompts is None else tuple(prompts.shape)
            raise ValueError(
                f"`prompts` for prompt kind {c.prompt!r} must have shape {expected}, got {found}"
            )
        return prompts.to(self.device, self.dtype)

    def _conditioning(self, context_latents: Tensor) -> Tensor:
        """``(B, Tc' + Tf', C, h, w)`` I2V conditioning channels: the context latents, then zeros."""
        padding = context_latents.new_zeros(
            context_latents.shape[0], self.num_target_latents, *context_latents.shape[2:]
        )
        return torch.cat([context_latents, padding], dim=1)

    def _rotary(self) -> tuple[Tensor, Tensor] | None:
        num_latents = self.num_context_latents + self.num_target_latents
        return rotary_embedding(self.transformer.config, *self.latent_size, num_latents, self.device)

    def training_loss(
        self,
        context_frames: Tensor,
        target_frames: Tensor,
        prompts: Tensor | None,
        generator: torch.Generator | None = None,
        loss_weight: Tensor | None = None,
        text_embeds: Tensor | None = None,
    ) -> Tensor:
        """The v-prediction diffusion loss on the target frames' latents.

        Args:
            context_frames: ``(B, Tc, 3, H, W)`` in ``[-1, 1]``.
            target_frames: ``(B, Tf, 3, H, W)`` in ``[-1, 1]``.
            prompts: ``(B, Tc + Tf, Cp, H, W)`` image prompts in ``[-1, 1]``, ``(B, Tc + Tf, D)`` states, or
                ``None`` for the ``none`` kind. Ignored in the ``pretrain`` stage.
            generator: Source of the timesteps, noise, context-noise sigmas and control dropout.
            loss_weight: Optional ``(B, Tf, 1, H, W)`` per-pixel weights (e.g. larger on the interaction
                region), averaged down to the latent grid; the loss is ``mean(weight x squared error)``.
            text_embeds: Optional ``(B or 1, L, text_embed_dim)`` precomputed text embeddings used instead of
                the learned null text.

        Returns:
            The scalar loss.
        """
        latents = self.encode_clip(context_frames, target_frames)
        return self.latent_training_loss(latents, prompts, generator, loss_weight, text_embeds)

    @torch.no_grad()
    def encode_clip(self, context_frames: Tensor, target_frames: Tensor) -> Tensor:
        """Encodes a clip's context and target frames together, as :meth:`latent_training_loss` takes them.

        Args:
            context_frames: ``(B, Tc, 3, H, W)`` in ``[-1, 1]``.
            target_frames: ``(B, Tf, 3, H, W)`` in ``[-1, 1]``.

        Returns:
            ``(B, Tc' + Tf', C, h, w)`` scaled latents in the model's dtype, on its device. For a per-frame
            codec (``temporal_factor`` 1) latent frame ``t`` is frame ``t``'s alone, so latents may be
            computed once per frame and cut into clips; a temporal codec needs the whole clip at once.
        """
        c = self.config
        self._check_frames(context_frames, c.context_frames, "context_frames")
        self._check_frames(target_frames, c.frames_per_step, "target_frames")
        frames = torch.cat([context_frames, target_frames], dim=1).to(self.device)
        return self.codec.encode(frames).to(self.dtype)

    def latent_training_loss(
        self,
        latents: Tensor,
        prompts: Tensor | None,
        generator: torch.Generator | None = None,
        loss_weight: Tensor | None = None,
        text_embeds: Tensor | None = None,
    ) -> Tensor:
        """The loss of :meth:`training_loss` on precomputed clip latents (a trainer caches them once).

        Args:
            latents: ``(B, Tc' + Tf', C, h, w)`` scaled latents as :meth:`encode_clip` returns them.
            prompts: ``(B, Tc + Tf, Cp, H, W)`` image prompts, ``(B, Tc + Tf, D)`` states, or ``None``; see
                :meth:`training_loss`.
            generator: Source of the timesteps, noise, context-noise sigmas and control dropout.
            loss_weight: Optional ``(B, Tf, 1, H, W)`` per-pixel weights.
            text_embeds: Optional ``(B or 1, L, text_embed_dim)`` precomputed text embeddings.

        Returns:
            The scalar loss (float32).
        """
        c, batch_size = self.config, latents.shape[0]
        num_latents = self.num_context_latents + self.num_target_latents
        expected = (num_latents, self.codec.latent_channels, *self.latent_size)
        if latents.ndim != 5 or tuple(latents.shape[1:]) != expected:
            raise ValueError(
                f"`latents` must be (B, {', '.join(map(str, expected))}), got {tuple(latents.shape)}"
            )
        use_control = c.stage != "pretrain"
        prompts = self._check_prompts(prompts, batch_size) if use_control else None
        device, dtype = self.device, self.dtype
        latents = latents.to(device, dtype)

        draw_device = generator.device if generator is not None else device
        timesteps = torch.randint(
            0,
            self.scheduler.config.num_train_timesteps,
            (batch_size,),
            generator=generator,
            device=draw_device,
        ).to(device)
        noise = randn_tensor(tuple(latents.shape), generator=generator, device=device, dtype=dtype)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        velocity = self.scheduler.get_velocity(latents, noise, timesteps)

        context = latents[:, : self.num_context_latents]
        if c.context_noise_log_sigma is not None:
            log_sigma = torch.randn(batch_size, generator=generator, device=draw_device).to(device)
            sigma = (log_sigma * c.context_noise_log_sigma_std + c.context_noise_log_sigma).exp().to(dtype)
            eps = randn_tensor(tuple(context.shape), generator=generator, device=device, dtype=dtype)
            context = context + sigma.view(-1, 1, 1, 1, 1) * eps
        model_input = torch.cat([noisy, self._conditioning(context)], dim=2)

        keep = torch.rand(batch_size, generator=generator, device=draw_device).to(device) >= c.control_dropout
        control_scale = (keep & use_control).to(dtype)
        prediction = self._predict(
            model_input,
            timesteps,
            self._text(batch_size, text_embeds),
            prompts,
            control_scale,
            self._rotary(),
        )
        error = (prediction.float() - velocity.float()).square()[:, self.num_context_latents :]
        if loss_weight is not None:
            error = error * self._latent_weight(loss_weight)
        return error.mean()

    def _latent_weight(self, loss_weight: Tensor) -> Tensor:
        """``(B, Tf, 1, H, W)`` pixel weights -> ``(B, Tf', 1, h, w)`` by averaging over each latent cell."""
        expected = (self.config.frames_per_step, 1, *self.config.image_size)
        if loss_weight.ndim != 5 or tuple(loss_weight.shape[1:]) != expected:
            raise ValueError(
                f"`loss_weight` must be (B, {', '.join(map(str, expected))}), got {tuple(loss_weight.shape)}"
            )
        b, f, s = loss_weight.shape[0], self.codec.temporal_factor, self.codec.spatial_factor
        weight = loss_weight.to(self.device, torch.float32).unflatten(1, (self.num_target_latents, f)).mean(2)
        if s > 1:
            weight = F.avg_pool2d(weight.flatten(0, 1), s).unflatten(0, (b, self.num_target_latents))
        return weight

    @torch.no_grad()
    def generate(
        self,
        context_frames: Tensor,
        prompts: Tensor | None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        guidance_scale: float = 1.0,
        text_embeds: Tensor | None = None,
    ) -> Tensor:
        """Generates the next ``frames_per_step`` frames of a batch of sequences.

        Args:
            context_frames: ``(B, Tc, 3, H, W)`` in ``[-1, 1]``.
            prompts: ``(B, Tc + Tf, Cp, H, W)`` image prompts of the context and generated frames,
                ``(B, Tc + Tf, D)`` states, or ``None`` (ignored) for the ``none`` kind.
            num_inference_steps: Denoising steps; ``config.num_inference_steps`` when ``None``.
            generator: Source of all noise: the same seed gives the same frames.
            guidance_scale: Classifier-free guidance over the control (unconditional: ControlNet off / null
                state); 1 runs one pass.
            text_embeds: Optional ``(B or 1, L, text_embed_dim)`` precomputed text embeddings.

        Returns:
            ``(B, Tf, 3, H, W)`` float32 frames in ``[-1, 1]``.
        """
        c, batch_size = self.config, context_frames.shape[0]
        self._check_frames(context_frames, c.context_frames, "context_frames")
        prompts = self._check_prompts(prompts, batch_size)
        if guidance_scale != 1.0 and prompts is None:
            raise ValueError("`guidance_scale` != 1 needs a control signal; prompt kind 'none' has none")
        context = self.codec.encode(context_frames.to(self.device)).to(self.dtype)
        conditioning = self._conditioning(context)
        text = self._text(batch_size, text_embeds)
        rotary = self._rotary()

        def denoise(latents: Tensor, timesteps: Tensor, control_scale: Tensor) -> Tensor:
            repeats = latents.shape[0] // batch_size  # 2 in the guided pass: [conditional, unconditional]
            model_input = torch.cat([latents, conditioning.repeat(repeats, 1, 1, 1, 1)], dim=2)
            rows_prompts = None if prompts is None else prompts.repeat(repeats, *[1] * (prompts.ndim - 1))
            return self._predict(
                model_input, timesteps, text.repeat(repeats, 1, 1), rows_prompts, control_scale, rotary
            )

        num_latents = self.num_context_latents + self.num_target_latents
        latents = sample_latents(
            denoise,
            self.scheduler,
            (batch_size, num_latents, *context.shape[2:]),
            num_inference_steps or c.num_inference_steps,
            generator=generator,
            guidance_scale=guidance_scale,
            known_prefix=context,
            device=self.device,
            dtype=self.dtype,
        )
        if self.codec.temporal_factor == 1:
            # per-frame codecs decode the generated frames alone; a causal one needs the whole clip
            frames = self.codec.decode(latents[:, self.num_context_latents :])
        else:
            frames = self.codec.decode(latents)[:, c.context_frames :]
        return frames.float()

    # ------------------------------------------------------------------ save / load

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Writes the model into ``save_directory`` atomically (a temporary sibling, then a rename).

        Layout: ``config.json``, ``transformer/`` (plain diffusers weights, no LoRA), ``controlnet/``,
        ``lora/pytorch_lora_weights.safetensors``, ``codec/``, ``scheduler/``, ``extras.safetensors``
        (null text embedding, state embedder). All weights are safetensors.
        """
        with atomic_directory(Path(save_directory)) as tmp:
            (tmp / CONFIG_FILE).write_text(self.config.to_json())
            save_transformer(self.transformer, tmp / "transformer")
            if self.controlnet is not None:
                self.controlnet.save_pretrained(tmp / "controlnet")
            if self.config.lora_rank > 0:
                (tmp / LORA_WEIGHTS).parent.mkdir()
                lora = get_peft_model_state_dict(self.transformer)
                save_weights_file(lora, tmp / LORA_WEIGHTS)
            self.codec.save_pretrained(tmp / "codec")
            self.scheduler.save_pretrained(tmp / "scheduler")
            extras = {f"null_text.{k}": v for k, v in self.null_text.state_dict().items()}
            if self.state_embedder is not None:
                extras.update({f"state_embedder.{k}": v for k, v in self.state_embedder.state_dict().items()})
            save_weights_file(extras, tmp / EXTRAS_WEIGHTS)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        torch_dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        codec: Codec | None = None,
    ) -> ActionToVideoModel:
        """Loads a model written by :meth:`save_pretrained`.

        Args:
            directory: The saved model directory.
            torch_dtype: Dtype to cast the model to (e.g. ``torch.bfloat16`` on a GPU); float32 when ``None``.
            device: Where to put the model.
            codec: A codec to use instead of the saved ``codec/`` (e.g. one already loaded); it must be the
                codec the model was trained with (same :func:`~vap_env.model.checkpoint.module_fingerprint`).

        Raises:
            FileNotFoundError: If a file is missing (the message names it).
            OSError: If a weight file is truncated or unreadable (the message names it and says why).
            ValueError: If the config is invalid or ``codec`` is not the codec the model was trained with.
        """
        directory = Path(directory)
        config = load_config(directory)
        check_model_weights(directory / "transformer")
        transformer = ControlledCogVideoXTransformer.from_pretrained(
            directory / "transformer", torch_dtype=torch_dtype
        )
        controlnet = None
        if config.prompt in IMAGE_PROMPT_KINDS:
            check_model_weights(directory / "controlnet")
            controlnet = CogVideoXControlNet.from_pretrained(
                directory / "controlnet", torch_dtype=torch_dtype
            )
        codec = _saved_codec(directory, config, codec)
        scheduler = CogVideoXDDIMScheduler.from_pretrained(directory / "scheduler")
        extras = load_weights_file(directory / EXTRAS_WEIGHTS)
        model = cls(config, codec, transformer.to(device), controlnet, scheduler)
        model.null_text.load_state_dict(
            {k.removeprefix("null_text."): v for k, v in extras.items() if k.startswith("null_text.")}
        )
        if model.state_embedder is not None:
            model.state_embedder.load_state_dict(
                {
                    k.removeprefix("state_embedder."): v
                    for k, v in extras.items()
                    if k.startswith("state_embedder.")
                }
            )
        if config.lora_rank > 0:
            lora = load_weights_file(directory / LORA_WEIGHTS)
            result = set_peft_model_state_dict(model.transformer, lora)
            if result.unexpected_keys:
                raise OSError(
                    f"{directory / LORA_WEIGHTS} holds unexpected keys {result.unexpected_keys[:5]}"
                )
        return model.to(device=device, dtype=torch_dtype) if torch_dtype else model.to(device)

    @classmethod
    def from_pretrained_base(
        cls,
        directory: str | Path,
        config: WorldModelConfig,
        codec: Codec | None = None,
        torch_dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ) -> ActionToVideoModel:
        """A model of ``config`` on the base of a saved ``pretrain`` model, with a fresh conditioning.

        A ``pretrain`` model's base transformer learnt video continuation without actions, so any
        conditioning can be attached to it: ``config`` may differ from the saved config in
        :data:`~vap_env.model.config.ATTACHMENT_FIELDS` (prompt kind, ControlNet, LoRA, state embedder) and
        in the training fields. The new model has the saved base transformer weights (``transformer/``,
        without LoRA), null text embedding, codec and scheduler, and a fresh attachment: a ControlNet copied
        from the trained base (as :meth:`recopy_controlnet` does), new LoRA layers and a new state embedder,
        all zero-initialised where they meet the base, so at first its output is the pretrain model's.
        New weights come from the global random state (seed it for reproducible weights).

        Args:
            directory: A model saved by :meth:`save_pretrained` in the ``pretrain`` stage.
            config: The model to build; its ``stage`` sets which parameters train.
            codec: The codec to use instead of the saved one; it must be the codec the model was trained
                with.
            torch_dtype: Dtype to cast the model to; float32 when ``None``.
            device: Where to put the model.

        Raises:
            ValueError: If the configs differ in other than attachment and training fields (layers, heads,
                image size, robot, frames, ...), if attachment fields differ and the saved model is not a
                ``pretrain`` one, or if ``codec`` is not the model's.
            FileNotFoundError, OSError: If a file is missing or damaged.
        """
        directory = Path(directory)
        saved = load_config(directory)
        differences = saved.architecture_differences(config)
        listed = ", ".join(f"{k}: saved {a!r}, requested {b!r}" for k, (a, b) in differences.items())
        fixed = [k for k in differences if k not in ATTACHMENT_FIELDS]
        if fixed:
            raise ValueError(
                f"the model config does not fit the model in {directory} ({listed}); only the attachment "
                f"fields ({', '.join(ATTACHMENT_FIELDS)}) may change, on a 'pretrain' model's base"
            )
        if saved.stage != "pretrain":
            change = f" ({listed})" if listed else ""
            raise ValueError(
                f"the model config does not fit the model in {directory}{change}: a new conditioning (the "
                f"attachment fields {', '.join(ATTACHMENT_FIELDS)}) can be attached only to the base of a "
                f"'pretrain' model, and this one was trained in stage {saved.stage!r}; use a pretrain "
                "model or the saved config"
            )
        config = dataclasses.replace(config, codec_fingerprint=saved.codec_fingerprint)
        check_model_weights(directory / "transformer")
        transformer = ControlledCogVideoXTransformer.from_pretrained(
            directory / "transformer", torch_dtype=torch_dtype
        )
        codec = _saved_codec(directory, saved, codec)
        scheduler = CogVideoXDDIMScheduler.from_pretrained(directory / "scheduler")
        extras = load_weights_file(directory / EXTRAS_WEIGHTS)
        if "null_text.embedding" not in extras:
            raise OSError(f"{directory / EXTRAS_WEIGHTS} holds no null text embedding (null_text.embedding)")
        model = cls(
            config,
            codec,
            transformer.to(device),
            None,
            scheduler,
            null_text_init=extras["null_text.embedding"],
        )
        return model.to(device=device, dtype=torch_dtype) if torch_dtype else model.to(device)

    @classmethod
    def from_cogvideox(
        cls,
        pretrained_dir: str | Path,
        config: WorldModelConfig,
        torch_dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ) -> ActionToVideoModel:
        """Builds the world model on a CogVideoX diffusers checkpoint in a local directory.

        Reads ``transformer/``, ``vae/`` (wrapped in :class:`CogVideoXVAECodec`) and ``scheduler/`` (as a
        ``CogVideoXDDIMScheduler``), and optionally ``text_embeds.safetensors`` (one ``(1, L, D)`` or
        ``(L, D)`` tensor, e.g. T5 embeddings of a task prompt) as the initial null text embedding. A
        text-to-video transformer (``in_channels`` = latent channels) gets zero-initialised image-conditioning
        input channels. The transformer sizes in ``config`` are replaced by the checkpoint's, and the stage
        is set to ``control``.

        Args:
            pretrained_dir: The diffusers pipeline directory.
            config: Prompt kind, frames, ControlNet and LoRA settings.
            torch_dtype: Dtype of the transformer, ControlNet and VAE (e.g. ``torch.bfloat16`` on a GPU).
            device: Where to put the model.
        """
        pretrained_dir = Path(pretrained_dir)
        check_model_weights(pretrained_dir / "transformer")
        transformer = ControlledCogVideoXTransformer.from_pretrained(
            pretrained_dir / "transformer", torch_dtype=torch_dtype
        )
        codec = CogVideoXVAECodec.from_pretrained(pretrained_dir, subfolder="vae", torch_dtype=torch_dtype)
        scheduler_config = CogVideoXDDIMScheduler.load_config(pretrained_dir / "scheduler")
        scheduler = CogVideoXDDIMScheduler.from_config(scheduler_config)
        if transformer.config.in_channels == codec.latent_channels:
            transformer = add_image_conditioning_channels(transformer)
        tc = transformer.config
        null_text = None
        text_file = pretrained_dir / "text_embeds.safetensors"
        if text_file.exists():
            tensors = load_weights_file(text_file)
            if len(tensors) != 1:
                raise OSError(f"{text_file} must hold one tensor, found {sorted(tensors)}")
            null_text = next(iter(tensors.values()))
            null_text = null_text[None] if null_text.ndim == 2 else null_text
        absolute = not tc.use_rotary_positional_embeddings or tc.use_learned_positional_embeddings
        text_length = (
            null_text.shape[1]
            if null_text is not None
            else tc.max_text_seq_length
            if absolute
            else config.text_length
        )
        config = dataclasses.replace(
            config,
            num_layers=tc.num_layers,
            num_attention_heads=tc.num_attention_heads,
            attention_head_dim=tc.attention_head_dim,
            time_embed_dim=tc.time_embed_dim,
            text_embed_dim=tc.text_embed_dim,
            text_length=text_length,
            patch_size=tc.patch_size,
            use_rotary_positional_embeddings=tc.use_rotary_positional_embeddings,
            use_learned_positional_embeddings=tc.use_learned_positional_embeddings,
            stage="control",
        )
        num_frames = config.context_frames + config.frames_per_step
        if tc.use_learned_positional_embeddings and num_frames != tc.sample_frames:
            warnings.warn(
                f"the transformer learned positions for {tc.sample_frames} frames; with {num_frames} frames "
                "diffusers silently falls back to sin-cos positions (out of distribution for this model)",
                stacklevel=2,
            )
        model = cls(config, codec, transformer.to(device), None, scheduler, null_text_init=null_text)
        return model.to(device)


def load_config(directory: str | Path) -> WorldModelConfig:
    """The config of a model saved by :meth:`ActionToVideoModel.save_pretrained` (its ``config.json``).

    Raises:
        FileNotFoundError: If there is no ``config.json``.
        ValueError: If it is not a valid config.
    """
    config_file = Path(directory) / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"missing world-model config: {config_file} does not exist")
    try:
        return WorldModelConfig.from_json(config_file.read_text())
    except (json.JSONDecodeError, ValueError, TypeError) as error:
        raise ValueError(f"invalid world-model config {config_file}: {error}") from error


def _saved_codec(directory: Path, config: WorldModelConfig, codec: Codec | None) -> Codec:
    """The codec saved in ``directory/codec``, or ``codec`` after checking that it is the same one."""
    if codec is None:
        return load_codec(directory / "codec")
    # models saved before the fingerprint existed: compare with the codec saved beside them
    trained_with = config.codec_fingerprint or module_fingerprint(load_codec(directory / "codec"))
    given = module_fingerprint(codec)
    if given != trained_with:
        raise ValueError(
            f"the world model in {directory} was trained with codec {trained_with} (saved in its "
            f"codec/ folder), but the codec given is {given} ({type(codec).__name__}); pass the "
            "codec it was trained with, or none to use the saved one"
        )
    return codec
