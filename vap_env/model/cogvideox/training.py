"""What training needs of the CogVideoX world model: stages, trainable parts and the diffusion loss.

:class:`ActionToVideoTrainingMixin` is a part of :class:`~vap_env.model.cogvideox.model.ActionToVideoModel`
(as diffusers' loader mixins are parts of its models): it reads the model's codec, transformer, ControlNet,
state embedder, null text and scheduler, and builds none of them. Kept apart so that the model file holds
the architecture and sampling, and this one what a trainer calls (:meth:`~ActionToVideoTrainingMixin.set_stage`,
:meth:`~ActionToVideoTrainingMixin.latent_training_loss`, ...).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor, nn

from vap_env.model.cogvideox.controlnet import CogVideoXControlNet
from vap_env.model.config import STAGES
from vap_env.model.sampler import ddim_step, ddim_velocity_to

if TYPE_CHECKING:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    from vap_env.model.codec import Codec
    from vap_env.model.cogvideox.controlnet import NullTextEmbedding, StateEmbedding
    from vap_env.model.cogvideox.transformer import ControlledCogVideoXTransformer
    from vap_env.model.config import WorldModelConfig

__all__ = ["ActionToVideoTrainingMixin", "distillation_timesteps"]


def distillation_timesteps(scheduler: SchedulerMixin, student_steps: int) -> Tensor:
    """The student's timestep grid of :meth:`ActionToVideoTrainingMixin.distillation_loss`.

    The sampler's trailing DDIM grid of ``student_steps`` (``scheduler.set_timesteps``); a DDIM step from
    ``t`` goes to ``t - T // steps`` (diffusers' rule). The teacher's grid of twice the steps must hold every
    student timestep and the midpoint of each student step, so ``T`` (``num_train_timesteps``) must divide
    by ``2 x student_steps``.
    """
    train_steps = scheduler.config.num_train_timesteps
    if student_steps < 1 or train_steps % (2 * student_steps):
        raise ValueError(
            f"a {student_steps}-step student of a {2 * student_steps}-step teacher needs "
            f"{2 * student_steps} to divide the {train_steps} training timesteps (for 1000: 1, 2, 4, 5, 10, ... steps)"
        )
    grid = copy.deepcopy(scheduler)  # set_timesteps changes the scheduler; the model's own one samples
    grid.set_timesteps(student_steps)
    return grid.timesteps.clone()


class ActionToVideoTrainingMixin:
    """Training stages, per-part trainable parameters and the v-prediction loss of the world model."""

    # set by ActionToVideoModel.__init__
    config: WorldModelConfig
    codec: Codec
    transformer: ControlledCogVideoXTransformer
    controlnet: CogVideoXControlNet | None
    state_embedder: StateEmbedding | None
    null_text: NullTextEmbedding
    scheduler: SchedulerMixin
    num_context_latents: int
    num_target_latents: int
    num_sequence_context: int
    latent_size: tuple[int, int]
    device: torch.device
    dtype: torch.dtype

    # ------------------------------------------------------------------ stages and parameters

    def set_stage(self, stage: str) -> None:
        """Sets which parameters train.

        Args:
            stage: ``pretrain``: the base transformer (and null text) train, without conditioning;
                ``control``: the base is frozen, ControlNet + LoRA + state embedder + null text train;
                ``joint``: everything but the codec trains (small models from scratch);
                ``distill``: everything but the codec trains, towards a teacher that samples with twice the
                steps (:meth:`distillation_loss`).
        """
        if stage not in STAGES:
            raise ValueError(f"`stage` must be one of {list(STAGES)}, got {stage!r}")
        self.config.stage = stage
        parts = self._parts()
        trainable = {
            "pretrain": ("base",),
            "control": ("lora", "controlnet", "other"),
            "joint": ("base", "lora", "controlnet", "other"),
            "distill": ("base", "lora", "controlnet", "other"),
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
            encoder_unshuffle=c.controlnet_encoder_unshuffle,
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

    # ------------------------------------------------------------------ the diffusion loss

    def training_loss(
        self,
        context_frames: Tensor,
        target_frames: Tensor,
        prompts: Tensor | None,
        generator: torch.Generator | None = None,
        loss_weight: Tensor | None = None,
        text_embeds: Tensor | None = None,
    ) -> Tensor:
        """The v-prediction diffusion loss on the target frames' latents (or their change, see :meth:`to_target`).

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
        # the transformer's sequence: the whole clip in the ``sequence`` context layout, the target frames
        # alone in ``channels``
        n, nc = self.num_sequence_context, self.num_context_latents
        sequence = latents[:, nc - n :]
        noise = randn_tensor(tuple(sequence.shape), generator=generator, device=device, dtype=dtype)

        context = self._augment_context(latents[:, :nc], generator)
        # the diffusion's sample: the context, then the target frames' latents or their scaled change from
        # the context as the model sees it (noised), which is what sampling adds the change back to
        sample = self.to_target(sequence, context)
        noisy = self.scheduler.add_noise(sample, noise, timesteps)
        velocity = self.scheduler.get_velocity(sample, noise, timesteps)
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
        error = (prediction.float() - velocity.float()).square()[:, n:]
        if loss_weight is not None:
            error = error * self._latent_weight(loss_weight)
        return error.mean()

    @torch.no_grad()
    def rollout_context(
        self,
        latents: Tensor,
        prompts: Tensor | None,
        fraction: float,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Clips for :meth:`latent_training_loss` whose last context frames are, in a share of the rows, the
        model's own rollout instead of the recorded frames (``WorldModelTrainConfig.rollout_fraction``).

        A clip of ``Tc + L + Tf`` latents (``L`` rollout frames between the context and the target, as
        :class:`~vap_env.train.clips.ClipDataset` cuts them with ``rollout_frames``) becomes one of
        ``Tc + Tf``: its last ``Tc + Tf`` latents. In a row drawn for a rollout (each with probability
        ``fraction``) the ``L`` frames before the target are first replaced, one after another, by what the
        model generates from the ``Tc`` frames before each (recorded or already generated) and their prompts,
        with its own denoising steps, decoded and encoded again as the imagined env feeds its frames back.
        So the model learns its next step from the context it will itself produce, and to pull a drifting
        rollout back (the closed-loop training signal of the issue "Imagined contact"). No gradient flows
        through the rollout.

        Args:
            latents: ``(B, Tc' + L + Tf', C, h, w)`` clip latents (a per-frame codec: one latent per frame).
            prompts: ``(B, Tc + L + Tf, ...)`` prompts of those frames, or ``None`` for the ``none`` kind.
            fraction: Probability of a rollout per row, in ``[0, 1]``.
            generator: Source of the draws and of the rollouts' noise.

        Returns:
            ``(latents, prompts)`` of ``Tc + Tf`` frames.
        """
        tc, tf = self.num_context_latents, self.num_target_latents
        rollout = latents.shape[1] - tc - tf
        if self.codec.temporal_factor != 1 or self.config.frames_per_step != 1:
            raise ValueError(
                "training on the model's own rollouts needs one frame per step and a per-frame codec"
            )
        if rollout < 1:
            raise ValueError(
                f"`latents` hold {latents.shape[1]} frames: a rollout needs more than the model's {tc + tf}"
            )
        device = latents.device
        draw_device = generator.device if generator is not None else device
        rows = (torch.rand(latents.shape[0], generator=generator, device=draw_device) < fraction).to(device)
        if rows.any():
            latents = latents.clone()
            picked, picked_prompts = latents[rows], prompts[rows] if prompts is not None else None
            for t in range(tc, tc + rollout):
                step_prompts = picked_prompts[:, t - tc : t + 1] if picked_prompts is not None else None
                generated = self.generate_latents(picked[:, t - tc : t], step_prompts, generator=generator)
                picked[:, t : t + 1] = self.codec.encode(self.codec.decode(generated)).to(picked.dtype)
            latents[rows] = picked
        return latents[:, rollout:], prompts[:, rollout:] if prompts is not None else None

    def distillation_loss(
        self,
        latents: Tensor,
        prompts: Tensor | None,
        teacher: ActionToVideoTrainingMixin,
        generator: torch.Generator | None = None,
        loss_weight: Tensor | None = None,
    ) -> Tensor:
        """Progressive distillation (Salimans & Ho, 2022): one DDIM step of this model does two of ``teacher``'s.

        This model (the student) samples with ``config.num_inference_steps`` = K steps, the teacher (the same
        architecture, usually the weights the student started from) with 2K. For each clip a timestep ``t`` of
        the student's grid (:func:`distillation_timesteps`) is drawn and the clip's sample noised to ``z_t``
        as in training; the teacher takes its two DDIM steps ``t -> t - T/2K -> t - T/K`` from there, exactly
        as its sampler would (the sequence layout's context latents re-noised to the middle timestep with the
        same noise, like the sampler's known prefix). The student's target is the velocity whose single DDIM
        step from ``z_t`` lands where the teacher's two did (:func:`~vap_env.model.sampler.ddim_velocity_to`);
        the loss is the squared error to it on the generated latents (weighted as :meth:`latent_training_loss`
        weights, which is the paper's ``1 + SNR`` weighting of the clean-sample error). The control is always
        on: classifier-free guidance is not distilled. Context-noise augmentation is drawn as in training and
        given to both models alike.

        Args:
            latents: ``(B, Tc' + Tf', C, h, w)`` scaled clip latents (:meth:`encode_clip`).
            prompts: The clip's prompts, as :meth:`latent_training_loss` takes them.
            teacher: The model to distil; frozen, in eval mode, ``2 x num_inference_steps`` sampling steps.
            generator: Source of the timesteps, noise and context-noise sigmas.
            loss_weight: Optional ``(B, Tf, 1, H, W)`` per-pixel weights.

        Returns:
            The scalar loss (float32).
        """
        c, batch_size = self.config, latents.shape[0]
        steps = c.num_inference_steps
        if teacher.config.num_inference_steps != 2 * steps:
            raise ValueError(
                f"the teacher must sample with twice the student's {steps} steps, "
                f"not {teacher.config.num_inference_steps}"
            )
        grid = distillation_timesteps(self.scheduler, steps)
        prompts = self._check_prompts(prompts, batch_size)
        device, dtype = self.device, self.dtype
        latents = latents.to(device, dtype)
        draw_device = generator.device if generator is not None else device
        index = torch.randint(0, steps, (batch_size,), generator=generator, device=draw_device).to("cpu")
        train_steps = self.scheduler.config.num_train_timesteps
        t = grid[index]
        t_mid, t_end = t - train_steps // (2 * steps), t - train_steps // steps
        alphas = self.scheduler.alphas_cumprod
        final = torch.as_tensor(float(self.scheduler.final_alpha_cumprod))

        def alpha(timesteps: Tensor) -> Tensor:  # ᾱ per row, the final one for "before 0" (the clean sample)
            a = torch.where(timesteps >= 0, alphas[timesteps.clamp(min=0)], final)
            return a.to(device, torch.float32).view(-1, 1, 1, 1, 1)

        a_t, a_mid, a_end = alpha(t), alpha(t_mid), alpha(t_end)
        t, t_mid = t.to(device), t_mid.to(device)

        n, nc = self.num_sequence_context, self.num_context_latents
        sequence = latents[:, nc - n :]
        noise = randn_tensor(tuple(sequence.shape), generator=generator, device=device, dtype=dtype)
        context = self._augment_context(latents[:, :nc], generator)
        sample = self.to_target(sequence, context).float()
        noisy = a_t.sqrt() * sample + (1 - a_t).sqrt() * noise.float()
        conditioning = self._conditioning(context)
        on = torch.ones(batch_size, device=device, dtype=dtype)

        def velocity(model: ActionToVideoTrainingMixin, z: Tensor, timesteps: Tensor) -> Tensor:
            model_input = torch.cat([z.to(dtype), conditioning], dim=2)
            text, rotary = model._text(batch_size, None), model._rotary()
            return model._predict(model_input, timesteps, text, prompts, on, rotary).float()

        with torch.no_grad():
            middle = ddim_step(noisy, velocity(teacher, noisy, t), a_t, a_mid)
            if n:  # the sampler's known prefix: the context latents noised to this step, with the same noise
                prefix = a_mid.sqrt() * sample[:, :n] + (1 - a_mid).sqrt() * noise[:, :n].float()
                middle = torch.cat([prefix, middle[:, n:]], dim=1)
            end = ddim_step(middle, velocity(teacher, middle, t_mid), a_mid, a_end)
            target = ddim_velocity_to(noisy, end, a_t, a_end)
        error = (velocity(self, noisy, t) - target).square()[:, n:]
        if loss_weight is not None:
            error = error * self._latent_weight(loss_weight)
        return error.mean()

    def _augment_context(self, context: Tensor, generator: torch.Generator | None) -> Tensor:
        """The context latents with training's context-noise augmentation (``context_noise_log_sigma``), one
        ``sigma`` per clip; unchanged when it is off. Draws from ``generator`` after the diffusion noise."""
        c = self.config
        if c.context_noise_log_sigma is None:
            return context
        device, dtype = context.device, context.dtype
        draw_device = generator.device if generator is not None else device
        log_sigma = torch.randn(context.shape[0], generator=generator, device=draw_device).to(device)
        sigma = (log_sigma * c.context_noise_log_sigma_std + c.context_noise_log_sigma).exp().to(dtype)
        eps = randn_tensor(tuple(context.shape), generator=generator, device=device, dtype=dtype)
        return context + sigma.view(-1, 1, 1, 1, 1) * eps

    def to_target(self, latents: Tensor, context: Tensor) -> Tensor:
        """The transformer's sequence of clip latents -> the diffusion's sample (``WorldModelConfig.target``).

        ``latents``: ``(B, n + Tf', C, h, w)``, the ``n`` context latents the sequence holds
        (``num_sequence_context``: ``Tc'`` in the ``sequence`` layout, 0 in ``channels``), then the target's.
        ``frame``: the latents unchanged. ``change``: the context latents, then each target latent minus the
        last of ``context`` (the context as the model is given it), times ``change_scale``.
        :meth:`from_target` inverts it.
        """
        c, n = self.config, self.num_sequence_context
        if c.target == "frame":
            return latents
        self._require_change_scale()
        change = (latents[:, n:] - context[:, -1:]) * c.change_scale
        return torch.cat([latents[:, :n], change], dim=1)

    def from_target(self, sample: Tensor, context: Tensor) -> Tensor:
        """The inverse of :meth:`to_target`: the diffusion's sample -> the sequence's latents, given the context."""
        c, n = self.config, self.num_sequence_context
        if c.target == "frame":
            return sample
        self._require_change_scale()
        return torch.cat([sample[:, :n], context[:, -1:] + sample[:, n:] / c.change_scale], dim=1)

    def _require_change_scale(self) -> None:
        if self.config.change_scale is None:
            raise ValueError(
                "this `change` model has no `change_scale`: it is measured on the training clips when "
                "training starts (`train_world_model`); set it in the config to use the model untrained"
            )

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
