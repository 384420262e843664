"""The model a world-model run trains, and its loss as a module: new, or started from a saved model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor, nn

from vap_env.model.codec import load_codec
from vap_env.model.cogvideox.loaders import load_config
from vap_env.model.cogvideox.model import ActionToVideoModel
from vap_env.model.config import WorldModelConfig
from vap_env.model.object_dynamics import ObjectDynamics


def build_model(
    model_config: WorldModelConfig | None, codec_dir: Path | None, init_from: Path | None, seed: int
) -> ActionToVideoModel:
    """The model to train: new from ``model_config``, or the weights of ``init_from``.

    With ``init_from``, ``model_config`` (optional) may change only the training fields
    (:data:`~vap_env.model.config.TRAINING_FIELDS`: stage, control dropout, context noise, sampling steps,
    motion-compensated context);
    its architecture, robot and image size must be the saved model's. Going from a ``pretrain`` model to
    another stage re-copies the ControlNet from the pretrained base
    (:meth:`ActionToVideoModel.recopy_controlnet`). A ``pretrain`` model also takes a ``model_config`` that
    differs in the attachment fields (:data:`~vap_env.model.config.ATTACHMENT_FIELDS`: prompt kind,
    ControlNet, LoRA, state embedder): then the model is the saved base with that new, freshly initialised
    conditioning (:meth:`ActionToVideoModel.from_pretrained_base`), which is how several conditioning
    variants (e.g. the ControlNet-only and LoRA-only ablations) start from one pretrained base.
    New weights are drawn from ``seed`` without touching the global random state.

    Raises:
        ValueError: If the stage is ``control`` without ``init_from``, the configs disagree (attachment
            fields may differ only from a ``pretrain`` model), or the codec of ``codec_dir`` is not the one
            ``init_from`` was trained with.
    """
    codec = load_codec(codec_dir) if codec_dir is not None else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if init_from is None:
            if model_config is None:
                raise ValueError("pass a model config for a new model, or `init_from` a saved one")
            if model_config.stage == "distill":
                raise ValueError(
                    "stage 'distill' distils a trained model into fewer sampling steps: pass `init_from` "
                    "the model to distil (the teacher)"
                )
            if model_config.stage == "control":
                raise ValueError(
                    "stage 'control' trains a ControlNet beside a frozen base: pass `init_from` a pretrain "
                    "output (its model/ directory), or train stage 'joint' from scratch"
                )
            return ActionToVideoModel(model_config, codec)
        saved = load_config(init_from)
        if model_config is not None and model_config.change_scale is None:
            # "measure it" means "keep the one measured" for a model that has one
            model_config = dataclasses.replace(model_config, change_scale=saved.change_scale)
        if model_config is not None and saved.attachment_differences(model_config):
            # a new conditioning on the saved base (which refuses any other change, or a non-pretrain model)
            return ActionToVideoModel.from_pretrained_base(init_from, model_config, codec=codec)
        model = ActionToVideoModel.from_pretrained(init_from, codec=codec)
        trained_stage = model.config.stage
        if model_config is not None:
            differences = model.config.architecture_differences(model_config)
            if differences:
                listed = ", ".join(f"{k}: saved {a!r}, requested {b!r}" for k, (a, b) in differences.items())
                raise ValueError(f"the model config does not fit the model in {init_from} ({listed})")
            for name in (
                "control_dropout",
                "context_noise_log_sigma",
                "context_noise_log_sigma_std",
                "warped_context",
                "object_warp",
            ):
                setattr(model.config, name, getattr(model_config, name))
            if model.config.object_warp and model.object_dynamics is None:  # switched on by this fine-tune
                model.object_dynamics = ObjectDynamics().eval().requires_grad_(False)
            model.config.num_inference_steps = model_config.num_inference_steps
            model.set_stage(model_config.stage)
        if trained_stage == "pretrain" and model.config.stage != "pretrain" and model.controlnet is not None:
            model.recopy_controlnet()
    return model


def build_teacher(init_from: Path, student_steps: int) -> ActionToVideoModel:
    """The frozen teacher of a ``distill`` run: the saved model, sampling with twice the student's steps.

    The saved model's own ``num_inference_steps`` does not matter: a model saved for 4 steps teaches a
    1-step student at 2 steps (what it does with 2 is what the student learns to do in 1).
    """
    teacher = ActionToVideoModel.from_pretrained(init_from)
    teacher.config.num_inference_steps = 2 * student_steps
    teacher.requires_grad_(False)
    return teacher.eval()


class DiffusionLoss(nn.Module):
    """The model's latent training loss as a module's ``forward``; with a ``teacher``, the distillation loss.

    DDP (through ``accelerator.prepare``) synchronises gradients only for calls of the wrapped module's
    ``forward``, not of other methods such as ``latent_training_loss``. The teacher (frozen) is a submodule
    so that it moves to the run's device with the model; it stays in eval mode.
    """

    def __init__(
        self,
        model: ActionToVideoModel,
        teacher: ActionToVideoModel | None = None,
        rollout_fraction: float = 0.0,
    ) -> None:
        super().__init__()
        self.model, self.teacher, self.rollout_fraction = model, teacher, rollout_fraction

    def train(self, mode: bool = True) -> DiffusionLoss:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def forward(
        self, latents: Tensor, prompts: Tensor | None, weight: Tensor, generator: torch.Generator
    ) -> Tensor:
        """Loss of ``(B, Tc' + Tf', C, h, w)`` latents (:meth:`ActionToVideoModel.latent_training_loss`, or
        :meth:`~ActionToVideoModel.distillation_loss` towards the teacher); with a ``rollout_fraction``, of
        clips with rollout frames, that share of them with the model's own rollout as their context
        (:meth:`~ActionToVideoModel.rollout_context`)."""
        if self.rollout_fraction:
            latents, prompts = self.model.rollout_context(latents, prompts, self.rollout_fraction, generator)
        if self.teacher is not None:
            return self.model.distillation_loss(latents, prompts, self.teacher, generator, loss_weight=weight)
        return self.model.latent_training_loss(latents, prompts, generator, loss_weight=weight)
