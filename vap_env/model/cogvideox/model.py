"""The CogVideoX action-to-video world model: codec + transformer + ControlNet + LoRA + scheduler.

:class:`ActionToVideoModel` predicts the next frames of a video from its last frame(s) and a visual action
prompt, as in "Precise Action-to-Video Generation Through Visual Action Prompts" (arXiv 2508.13104). The
context latents condition the transformer image-to-video style (concatenated on channels, zero over the
frames to generate); the prompt video drives a ControlNet branch (or, for the ``state`` kind, an embedding
added to the timestep embedding). The same code trains a tiny model from scratch on a CPU
(``WorldModelConfig.tiny()``) and fine-tunes a full CogVideoX-I2V checkpoint read from a local diffusers
directory (:meth:`ActionToVideoModel.from_cogvideox`). It meets :class:`~vap_env.model.protocol.WorldModel`,
the envs' view of a backbone.

Sequence layout: ``Tc`` context frames then ``Tf`` generated frames, encoded together into ``Tc' + Tf'``
latent frames (``Tc' = (Tc - 1) / f + 1``, ``Tf' = Tf / f`` for codec temporal factor ``f``). In the
``sequence`` context layout (``WorldModelConfig.context_layout``, CogVideoX's) the transformer's tokens are
all ``Tc' + Tf'`` latent frames: the noisy channels hold the whole sequence at one noise level, the context
part is the noised context in training and is replaced by it at every sampling step, and the loss covers the
generated part only. In the ``channels`` layout (DIAMOND's) the tokens are the ``Tf'`` generated latent
frames alone, each with the ``Tc'`` clean context latents stacked on its channels.

The parts live apart: the loaders (``from_pretrained``, ``from_pretrained_base``, ``from_cogvideox``) in
:mod:`~vap_env.model.cogvideox.loaders`, the training stages and losses in
:mod:`~vap_env.model.cogvideox.training`, the config in :mod:`vap_env.model.config`, the file helpers in
:mod:`vap_env.model.checkpoint`. The config records the fingerprint of the codec
(:func:`~vap_env.model.checkpoint.module_fingerprint`), so a saved model refuses to load with another codec.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from peft import LoraConfig, get_peft_model_state_dict
from torch import Tensor, nn

from vap_env.model.checkpoint import atomic_directory, module_fingerprint, save_weights_file
from vap_env.model.codec import Codec, CogVideoXVAECodec, PixelCodec
from vap_env.model.cogvideox.controlnet import CogVideoXControlNet, NullTextEmbedding, StateEmbedding
from vap_env.model.cogvideox.loaders import EXTRAS_WEIGHTS, LORA_WEIGHTS, ActionToVideoLoadersMixin
from vap_env.model.cogvideox.training import ActionToVideoTrainingMixin
from vap_env.model.cogvideox.transformer import (
    ControlledCogVideoXTransformer,
    rotary_embedding,
    save_transformer,
)
from vap_env.model.config import WorldModelConfig
from vap_env.model.loading import CLASS_NAME_KEY, CONFIG_FILE
from vap_env.model.object_dynamics import OBJECT_DYNAMICS_DIR, ObjectDynamics
from vap_env.model.protocol import WorldModelSpec
from vap_env.model.sampler import default_scheduler, sample_latents
from vap_env.prompts.kinds import prompt_kind

__all__ = ["LORA_TARGET_MODULES", "ActionToVideoModel"]

LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]


class ActionToVideoModel(ActionToVideoTrainingMixin, ActionToVideoLoadersMixin, nn.Module):
    """Codec + controlled CogVideoX transformer + ControlNet/state embedder + null text + scheduler.

    Args:
        config: The configuration.
        codec: Frames <-> latents; a :class:`PixelCodec` when ``None``. Always frozen. When
            ``config.codec_fingerprint`` is set (the config of a trained model), the codec must have that
            fingerprint; otherwise the codec's fingerprint is written into the model's config.
        transformer: A base transformer to use (``in_channels`` = 2 x codec latent channels in the
            ``sequence`` context layout, ``1 + Tc'`` x them in ``channels``; without LoRA); built from
            ``config`` when ``None``.
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
        # where a pushed object goes (fitted by the trainer, frozen here: no stage trains it)
        self.object_dynamics = ObjectDynamics().eval().requires_grad_(False) if config.object_warp else None
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
        # context latent frames among the transformer's tokens: all of them in the ``sequence`` layout, none
        # in ``channels`` (there they are channels of every generated frame's tokens)
        self.num_sequence_context = self.num_context_latents if config.context_layout == "sequence" else 0
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
        self._rotary_tables: dict[torch.device, tuple[Tensor, Tensor] | None] = {}  # see _rotary
        self.transformer = transformer or self._build_transformer()
        self._check_transformer()
        self.controlnet = controlnet
        conditioning = prompt_kind(config.prompt).conditioning
        if conditioning == "image" and controlnet is None:
            self.controlnet = CogVideoXControlNet.from_transformer(
                self.transformer,
                config.controlnet_layers,
                config.prompt_channels,
                spatial_stride=s * config.patch_size,
                temporal_stride=f,
                encoder_channels=config.controlnet_encoder_channels,
                encoder_unshuffle=config.controlnet_encoder_unshuffle,
            )
        self.state_embedder = None
        if conditioning == "vector":
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
        num_latents = self.num_sequence_context + self.num_target_latents
        return ControlledCogVideoXTransformer(
            num_attention_heads=c.num_attention_heads,
            attention_head_dim=c.attention_head_dim,
            in_channels=self.in_channels,
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
            "in_channels": self.in_channels,
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

    @property
    def in_channels(self) -> int:
        """Input channels of the transformer: a token's noisy latent, then its conditioning latents (its own
        clean context frame, or zeros, in the ``sequence`` layout; all ``Tc'`` context frames in ``channels``)."""
        per_token = 1 if self.num_sequence_context else self.num_context_latents
        return (1 + per_token) * self.codec.latent_channels

    # ------------------------------------------------------------------ nn.Module and the WorldModel protocol

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

    @property
    def spec(self) -> WorldModelSpec:
        """What the model was trained for, as the envs read it (:class:`~vap_env.model.protocol.WorldModel`)."""
        c = self.config
        return WorldModelSpec(
            robot=c.robot,
            image_size=c.image_size,
            prompt=c.prompt,
            prompt_channels=c.prompt_channels,
            context_frames=c.context_frames,
            frames_per_step=c.frames_per_step,
            state_dim=c.state_dim,
            num_inference_steps=c.num_inference_steps,
            warped_context=c.warped_context,
            object_warp=c.object_warp,
        )

    # ------------------------------------------------------------------ the model

    def _predict(
        self,
        model_input: Tensor,
        timesteps: Tensor,
        text: Tensor,
        prompts: Tensor | None,
        control_scale: Tensor,
        rotary: tuple[Tensor, Tensor] | None,
        trajectory: Tensor | None = None,
    ) -> Tensor:
        """Base prediction with the control signal scaled per row; the ControlNet skips rows with scale 0.

        ``trajectory``: the ControlNet's tokens of ``prompts`` (:meth:`CogVideoXControlNet.encode_prompt`,
        one row per row of ``model_input``), which the sampler encodes once for all its steps; encoded from
        ``prompts`` here when ``None``.
        """
        samples, added = None, None
        active = control_scale != 0
        if trajectory is None and prompts is not None and self._drops_context_prompt_tokens():
            trajectory = self._trajectory_tokens(prompts, model_input.dtype)
        if self.controlnet is not None and prompts is not None and bool(active.any()):
            rows = active.nonzero().squeeze(1)
            run_all = bool(active.all())
            part = self.controlnet(
                model_input if run_all else model_input[rows],
                text if run_all else text[rows],
                timesteps if run_all else timesteps[rows],
                None if trajectory is not None else prompts if run_all else prompts[rows],
                image_rotary_emb=rotary,
                trajectory_tokens=None if trajectory is None else trajectory if run_all else trajectory[rows],
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

    def _text(
        self,
        batch_size: int,
        text_embeds: Tensor | None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """The text rows; ``device`` and ``dtype`` (the model's when ``None``) as in :meth:`_check_prompts`."""
        if text_embeds is None:
            return self.null_text(batch_size)
        if text_embeds.ndim != 3 or text_embeds.shape[-1] != self.config.text_embed_dim:
            raise ValueError(
                f"`text_embeds` must be (B or 1, L, {self.config.text_embed_dim}), "
                f"got {tuple(text_embeds.shape)}"
            )
        return text_embeds.to(device or self.device, dtype or self.dtype).expand(batch_size, -1, -1)

    def _check_frames(self, frames: Tensor, num_frames: int, name: str) -> None:
        expected = (num_frames, 3, *self.config.image_size)
        if frames.ndim != 5 or tuple(frames.shape[1:]) != expected:
            raise ValueError(
                f"`{name}` must be (B, {', '.join(map(str, expected))}), got {tuple(frames.shape)}"
            )

    def _check_prompts(
        self,
        prompts: Tensor | None,
        batch_size: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor | None:
        """Validates the prompts; returns them on the model's device (``None`` for the ``none`` kind).

        ``device`` and ``dtype``: the model's, when the caller has read them already (``None``: read here).
        diffusers' ``ModelMixin.device`` and ``.dtype`` walk every submodule, about a millisecond each for
        the tiny models, so :meth:`generate` reads them once rather than in every helper.
        """
        c = self.config
        conditioning = prompt_kind(c.prompt).conditioning
        if conditioning == "none":
            return None
        num_frames = c.context_frames + c.frames_per_step
        if conditioning == "vector":
            expected: tuple[int, ...] = (batch_size, num_frames, c.state_dim)
        else:
            expected = (batch_size, num_frames, c.prompt_channels, *c.image_size)
        if prompts is None or tuple(prompts.shape) != expected:
            found = None if prompts is None else tuple(prompts.shape)
            raise ValueError(
                f"`prompts` for prompt kind {c.prompt!r} must have shape {expected}, got {found}"
            )
        return prompts.to(device or self.device, dtype or self.dtype)

    def _drops_context_prompt_tokens(self) -> bool:
        """Whether the ControlNet's trajectory tokens of the context frames are cut off (``channels``)."""
        return self.controlnet is not None and self.num_sequence_context < self.num_context_latents

    def _trajectory_tokens(self, prompts: Tensor, dtype: torch.dtype) -> Tensor:
        """The ControlNet's trajectory tokens of ``prompts`` (``(B, Tc + Tf, Cp, H, W)``) for the sequence.

        The encoder sees every prompt frame (its 3D convolutions carry the context frames' prompts, hence
        the motion, into the generated frames' tokens); in the ``channels`` layout the context frames are not
        tokens, so their trajectory tokens are cut off.
        """
        tokens = self.controlnet.encode_prompt(prompts, dtype)
        if not self._drops_context_prompt_tokens():
            return tokens
        per_frame = tokens.shape[1] // (self.num_context_latents + self.num_target_latents)
        return tokens[:, (self.num_context_latents - self.num_sequence_context) * per_frame :].contiguous()

    def _conditioning(self, context_latents: Tensor) -> Tensor:
        """The I2V conditioning channels of the sequence, from ``(B, Tc', C, h, w)`` context latents.

        ``sequence`` layout: ``(B, Tc' + Tf', C, h, w)``, the context latents, then zeros. ``channels``:
        ``(B, Tf', Tc' C, h, w)``, all context latents on every generated frame's channels.
        """
        if not self.num_sequence_context:
            stacked = context_latents.flatten(1, 2).unsqueeze(1)
            return stacked.expand(-1, self.num_target_latents, -1, -1, -1).contiguous()
        padding = context_latents.new_zeros(
            context_latents.shape[0], self.num_target_latents, *context_latents.shape[2:]
        )
        return torch.cat([context_latents, padding], dim=1)

    def _rotary(
        self, device: torch.device | None = None, cache: bool = False
    ) -> tuple[Tensor, Tensor] | None:
        """The RoPE tables of the model's latent video on ``device`` (the model's when ``None``).

        ``cache``: keep them for the next call on that device. :meth:`generate` does: the tables depend only
        on the config, and building them cost 1-3 ms a call on a CPU, a quarter of a 64x64 frame's encoding.
        Training builds its own, so no table made under ``torch.inference_mode`` is saved for a backward.
        """
        device = device or self.device
        if cache and device in self._rotary_tables:
            return self._rotary_tables[device]
        num_latents = self.num_sequence_context + self.num_target_latents
        tables = rotary_embedding(self.transformer.config, *self.latent_size, num_latents, device)
        if cache:
            self._rotary_tables[device] = tables
        return tables

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
        c = self.config
        self._check_frames(context_frames, c.context_frames, "context_frames")
        context = self.codec.encode(context_frames.to(self.device)).to(self.dtype)
        generated = self.generate_latents(
            context, prompts, num_inference_steps, generator, guidance_scale, text_embeds
        )
        if self.codec.temporal_factor == 1:
            # per-frame codecs decode the generated frames alone; a causal one needs the whole clip
            frames = self.codec.decode(generated)
        else:
            frames = self.codec.decode(torch.cat([context, generated], dim=1))[:, c.context_frames :]
        return frames.float()

    @torch.no_grad()
    def generate_latents(
        self,
        context: Tensor,
        prompts: Tensor | None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        guidance_scale: float = 1.0,
        text_embeds: Tensor | None = None,
    ) -> Tensor:
        """:meth:`generate` in latent space: the next step's latents from the context's (nothing decoded).

        Args:
            context: ``(B, Tc', C, h, w)`` scaled context latents, as the codec encodes the context frames.
            prompts, num_inference_steps, generator, guidance_scale, text_embeds: As for :meth:`generate`.

        Returns:
            ``(B, Tf', C, h, w)`` latents of the generated frames, in the model's dtype.
        """
        c, batch_size = self.config, context.shape[0]
        expected = (self.num_context_latents, self.codec.latent_channels, *self.latent_size)
        if context.ndim != 5 or tuple(context.shape[1:]) != expected:
            raise ValueError(
                f"`context` must be (B, {', '.join(map(str, expected))}), got {tuple(context.shape)}"
            )
        device, dtype = self.device, self.dtype  # once: each walks every submodule (see _check_prompts)
        prompts = self._check_prompts(prompts, batch_size, device, dtype)
        if guidance_scale != 1.0 and prompts is None:
            raise ValueError("`guidance_scale` != 1 needs a control signal; prompt kind 'none' has none")
        steps = num_inference_steps or c.num_inference_steps
        if c.stage == "distill" and steps != c.num_inference_steps:
            warnings.warn(
                f"this model was distilled to sample with {c.num_inference_steps} denoising step(s); with "
                f"{steps} its frames are worse (progressive distillation trains only its own steps): leave "
                "`num_inference_steps` unset",
                stacklevel=3,
            )
        context = context.to(device, dtype)
        conditioning = self._conditioning(context)
        text = self._text(batch_size, text_embeds, device, dtype)
        rotary = self._rotary(device, cache=True)
        encode = self._trajectory_tokens if self.controlnet is not None else None
        rows = _RowInputs(encode, conditioning, text, prompts)

        def denoise(latents: Tensor, timesteps: Tensor, control_scale: Tensor) -> Tensor:
            repeats = latents.shape[0] // batch_size  # 2 in the guided pass: [conditional, unconditional]
            r = rows.repeated(repeats)
            model_input = torch.cat([latents, r.conditioning], dim=2)
            return self._predict(
                model_input, timesteps, r.text, r.prompts, control_scale, rotary, trajectory=r.trajectory
            )

        n = self.num_sequence_context
        latents = sample_latents(
            denoise,
            self.scheduler,
            (batch_size, n + self.num_target_latents, *context.shape[2:]),
            steps,
            generator=generator,
            guidance_scale=guidance_scale,
            known_prefix=context if n else None,
            device=device,
            dtype=dtype,
        )
        return self.from_target(latents, context)[:, n:]

    # ------------------------------------------------------------------ save / load

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Writes the model into ``save_directory`` atomically (a temporary sibling, then a rename).

        Layout: ``config.json`` (the config, and the class name as ``_class_name`` for
        :func:`~vap_env.model.loading.load_world_model`), ``transformer/`` (plain diffusers weights, no
        LoRA), ``controlnet/``, ``lora/pytorch_lora_weights.safetensors``, ``codec/``, ``scheduler/``,
        ``extras.safetensors`` (null text embedding, state embedder). All weights are safetensors.
        """
        with atomic_directory(Path(save_directory)) as tmp:
            # the class first, as diffusers writes it; WorldModelConfig.from_json skips "_" keys
            config = {CLASS_NAME_KEY: type(self).__name__, **json.loads(self.config.to_json())}
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2))
            save_transformer(self.transformer, tmp / "transformer")
            if self.controlnet is not None:
                self.controlnet.save_pretrained(tmp / "controlnet")
            if self.config.lora_rank > 0:
                (tmp / LORA_WEIGHTS).parent.mkdir()
                lora = get_peft_model_state_dict(self.transformer)
                save_weights_file(lora, tmp / LORA_WEIGHTS)
            self.codec.save_pretrained(tmp / "codec")
            if self.object_dynamics is not None:
                self.object_dynamics.save(tmp / OBJECT_DYNAMICS_DIR)
            self.scheduler.save_pretrained(tmp / "scheduler")
            extras = {f"null_text.{k}": v for k, v in self.null_text.state_dict().items()}
            if self.state_embedder is not None:
                extras.update({f"state_embedder.{k}": v for k, v in self.state_embedder.state_dict().items()})
            save_weights_file(extras, tmp / EXTRAS_WEIGHTS)


@dataclasses.dataclass
class _Rows:
    """The conditioning of the rows of one denoiser call (see :class:`_RowInputs`)."""

    conditioning: Tensor
    text: Tensor
    prompts: Tensor | None
    trajectory: Tensor | None


class _RowInputs:
    """What every denoising step of one ``generate`` call feeds the transformer besides the latents.

    It does not change from step to step, so it is built once per batch layout (``repeats`` = 1, or 2 for
    the classifier-free guidance rows) instead of at every step: the repeated conditioning latents, text and
    prompts, and the ControlNet's trajectory tokens of the prompts, whose 3D convolutions at the prompts'
    full resolution were a fifth of the denoising loop when recomputed at every step. The tensors are the
    ones a per-step computation makes (the same values in the same contiguous layout, so the same kernels
    give the same bits): only the repetition is gone.
    """

    def __init__(
        self,
        encode: Callable[[Tensor, torch.dtype], Tensor] | None,
        conditioning: Tensor,
        text: Tensor,
        prompts: Tensor | None,
    ) -> None:
        """``encode``: the model's trajectory tokens of prompts (``None`` without a ControlNet)."""
        self.encode, self.conditioning, self.text, self.prompts = encode, conditioning, text, prompts
        self._built: dict[int, _Rows] = {}

    def repeated(self, repeats: int) -> _Rows:
        """The inputs of ``repeats`` copies of the batch, stacked along the rows."""
        if repeats not in self._built:
            prompts = self.prompts
            if prompts is not None:
                prompts = prompts.repeat(repeats, *[1] * (prompts.ndim - 1))
            trajectory = None
            if self.encode is not None and prompts is not None:
                # the ControlNet runs on the conditional rows, the first B: those of one copy
                one = prompts[: self.conditioning.shape[0]]
                tokens = self.encode(one.contiguous(), self.conditioning.dtype)
                trajectory = tokens.repeat(repeats, 1, 1)
            self._built[repeats] = _Rows(
                self.conditioning.repeat(repeats, 1, 1, 1, 1),
                self.text.repeat(repeats, 1, 1),
                prompts,
                trajectory,
            )
        return self._built[repeats]
