"""Validation of the world model during training: one-step generation on held-out clips, fixed-noise losses.

Validation is on held-out *episodes* (see :mod:`vap_env.train.splits`): one-step generation PSNR/SSIM beside
the repeat-last-frame baseline on the same clips, and the diffusion loss at fixed noise on held-out and
training clips, so that the numbers are comparable across steps. A second baseline repeats the last frame
through the codec (encoded and decoded): every generated frame comes out of its decoder, so that is the
most a model that predicts "nothing moves" can score, and where the codec's error is as large as the change
between two frames (a latent codec at 128x128: experiment 6 of ``docs/results/interaction_experiments.md``)
it lies well below the plain repeat. For a motion-compensated model (``WorldModelConfig.warped_context``) the
last context frame is the warped one, so the baseline is the kinematic warp of the last frame: what the model
has to improve on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vap_env.evaluate.image_metrics import psnr, ssim
from vap_env.model.codec import tensor_to_frames
from vap_env.model.cogvideox.model import ActionToVideoModel
from vap_env.train.clips import ClipDataset

EVAL_FIELDS = (
    "train_eval_loss",
    "heldout_loss",
    "heldout_psnr",
    "heldout_ssim",
    "baseline_psnr",
    "baseline_ssim",
    "codec_baseline_psnr",
    "codec_baseline_ssim",
)
"""The metrics :func:`evaluate` returns."""
_EVAL_SEED = 1234  # fixed noise for every evaluation, so that the numbers are comparable across steps

# Identical uint8 frames have infinite PSNR; 60 dB is above any real difference (one grey level everywhere
# is 48 dB) and keeps the mean finite when the repeat-last-frame baseline meets a still frame.
PSNR_CAP_DB = 60.0


def evaluation_batch(clips: ClipDataset, count: int) -> dict[str, Tensor]:
    """``count`` clips evenly spaced stacked: ``context``, ``target``, ``prompts``, ``weight``.

    Clips cut for training on the model's own rollouts lose their rollout frames (the first ones): what is
    evaluated is the model's step from recorded context."""
    step = max(1.0, len(clips) / count)
    indices = sorted({int(i * step) for i in range(min(count, len(clips)))})
    items = [clips[i] for i in indices]
    batch = {
        key: torch.stack([item[key] for item in items]) for key in ("context", "target", "prompts", "weight")
    }
    skip = clips.config.rollout_frames
    return batch | {"context": batch["context"][:, skip:], "prompts": batch["prompts"][:, skip:]}


@torch.no_grad()
def evaluate(
    model: ActionToVideoModel,
    heldout: dict[str, Tensor],
    train: dict[str, Tensor],
    batch_size: int = 32,
) -> dict[str, float]:
    """Held-out one-step generation PSNR/SSIM, the repeat-last-frame baseline, and fixed-noise losses.

    Args:
        model: The model (its mode is restored afterwards).
        heldout: Held-out clips from :func:`evaluation_batch`.
        train: Training clips from :func:`evaluation_batch`, for the fixed-noise training loss.
        batch_size: Clips per forward pass.

    Returns:
        ``train_eval_loss`` and ``heldout_loss`` (diffusion loss at fixed timesteps and noise),
        ``heldout_psnr``/``heldout_ssim`` of the generated frames, ``baseline_psnr``/``baseline_ssim`` of
        the last context frame repeated and ``codec_baseline_psnr``/``codec_baseline_ssim`` of it repeated
        through the codec, per frame in dB and [0, 1], averaged over clips and frames.
    """
    was_training = model.training
    model.eval()
    device = model.device
    result = {
        "train_eval_loss": _fixed_noise_loss(model, train, batch_size),
        "heldout_loss": _fixed_noise_loss(model, heldout, batch_size),
    }
    generator = torch.Generator(device).manual_seed(_EVAL_SEED)
    frames = []
    for start in range(0, len(heldout["context"]), batch_size):
        part = {k: v[start : start + batch_size].to(device) for k, v in heldout.items()}
        frames.append(model.generate(part["context"], part["prompts"], generator=generator).cpu())
    target = tensor_to_frames(heldout["target"])
    last = heldout["context"][:, -1:]
    repeated = tensor_to_frames(last.expand_as(heldout["target"]))
    through_codec = torch.cat(
        [
            model.codec.decode(model.codec.encode(last[i : i + batch_size].to(device))).float().cpu()
            for i in range(0, len(last), batch_size)
        ]
    )
    codec_repeated = tensor_to_frames(through_codec.expand_as(heldout["target"]))
    for name, frames_u8 in (
        ("heldout", tensor_to_frames(torch.cat(frames))),
        ("baseline", repeated),
        ("codec_baseline", codec_repeated),
    ):
        result[f"{name}_psnr"] = float(psnr(target, frames_u8).clip(max=PSNR_CAP_DB).mean())
        result[f"{name}_ssim"] = float(ssim(target, frames_u8).mean())
    model.train(was_training)
    return result


def _fixed_noise_loss(model: ActionToVideoModel, clips: dict[str, Tensor], batch_size: int) -> float:
    generator = torch.Generator(model.device).manual_seed(_EVAL_SEED)
    total, count = 0.0, len(clips["context"])
    for start in range(0, count, batch_size):
        part = {k: v[start : start + batch_size].to(model.device) for k, v in clips.items()}
        loss = model.training_loss(
            part["context"], part["target"], part["prompts"], generator=generator, loss_weight=part["weight"]
        )
        total += loss.item() * len(part["context"])
    return total / count
