"""Training loop of the per-frame codec (:class:`~vap_env.model.codec.FrameAutoencoder`).

One ``accelerate`` loop on the training harness (:mod:`vap_env.train.harness`): it runs unchanged under
plain ``python`` on a CPU and under ``accelerate launch`` (DDP on GPUs, several nodes). Frames live in
memory as one uint8 tensor and batches are drawn from it at random — no flips or crops, because the robot's
geometry in the image is what the world model must learn.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from torch import Tensor

from vap_env.evaluate.image_metrics import masked_psnr, psnr, ssim
from vap_env.model.codec import FrameAutoencoder, frames_to_tensor, tensor_to_frames
from vap_env.train.config import CodecTrainConfig
from vap_env.train.harness import (
    Checkpoints,
    RunDirectory,
    StepState,
    create_accelerator,
    optimizer_step,
    progress_bar,
    share_cpu_threads,
)
from vap_env.train.metrics import MetricsLog

METRIC_FIELDS = (
    "step",
    "train_loss",
    "l1",
    "mse",
    "edge",
    "latent_l2",
    "lr",
    "heldout_psnr",
    "heldout_ssim",
    "heldout_fg_psnr",
    "heldout_object_psnr",
    "elapsed_s",
)


class _FrameSampler(StepState):
    """Draws the random batch indices of each step; its step count travels in the checkpoints.

    The indices are a pure function of (seed, process, step), so a resumed run draws the same batches as an
    uninterrupted one without saving a generator state per process (accelerate keeps custom states of the
    main process only).
    """

    def __init__(self, num_frames: int, batch_size: int, seed: int, process_index: int) -> None:
        super().__init__()
        self.num_frames, self.batch_size = num_frames, batch_size
        self.seed, self.process_index = seed, process_index

    def next_indices(self) -> Tensor:
        entropy = np.random.SeedSequence([self.seed, self.process_index, self.step]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(entropy))
        return torch.randint(self.num_frames, (self.batch_size,), generator=generator)


def sobel_edges(images: Tensor) -> Tensor:
    """Horizontal and vertical Sobel gradients of ``(N, C, H, W)`` images: ``(N, 2C, H, W)``."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device) / 8.0
    kernels = torch.stack([kx, kx.T]).unsqueeze(1).to(images.dtype).repeat(images.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernels, groups=images.shape[1])


def reconstruction_losses(
    recon: Tensor, images: Tensor, latents: Tensor, pixel_weights: Tensor | None = None
) -> dict[str, Tensor]:
    """The loss terms (scalars) of ``(N, 3, H, W)`` reconstructions and their raw latents.

    Args:
        recon: ``(N, 3, H, W)`` reconstructions.
        images: ``(N, 3, H, W)`` targets.
        latents: ``(N, C, h, w)`` raw latents.
        pixel_weights: ``(N, 1, H, W)`` weights of the L1 and squared errors (a weighted mean); None: uniform.
    """
    error = recon - images
    w = torch.ones_like(images[:, :1]) if pixel_weights is None else pixel_weights
    return {
        "l1": (w * error.abs()).mean() / w.mean(),
        "mse": (w * error.square()).mean() / w.mean(),
        "edge": (sobel_edges(recon.float()) - sobel_edges(images.float())).abs().mean(),
        "latent_l2": latents.float().square().mean(),
    }


def static_background(frames: Tensor, max_frames: int = 256) -> Tensor:
    """Per-pixel median ``(H, W, 3)`` uint8 of evenly spaced uint8 ``(N, H, W, 3)`` frames."""
    return _evenly_spaced(frames, max_frames).median(dim=0).values


def foreground_mask(frames: Tensor, background: Tensor, threshold: int) -> Tensor:
    """``(N, H, W)`` pixels of uint8 ``(N, H, W, 3)`` frames differing from the background by > threshold."""
    return (frames.int() - background.int()).abs().amax(dim=-1) > threshold


def _prepare_frames(frames: np.ndarray, name: str, image_size: int | None, downsample: int) -> torch.Tensor:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(
            f"`{name}` must be a non-empty uint8 (N, H, W, 3) array, got {frames.dtype} {frames.shape}"
        )
    if image_size is not None and frames.shape[1:3] != (image_size, image_size):
        # INTER_AREA averages pixels when shrinking, so thin robot links do not alias away.
        frames = np.stack(
            [cv2.resize(f, (image_size, image_size), interpolation=cv2.INTER_AREA) for f in frames]
        )
    if frames.shape[1] % downsample or frames.shape[2] % downsample:
        raise ValueError(
            f"`{name}` frames are {frames.shape[1]}x{frames.shape[2]}, "
            f"not divisible by `downsample` {downsample}"
        )
    return torch.from_numpy(np.ascontiguousarray(frames))


def _prepare_masks(masks: np.ndarray | None, frames: Tensor, name: str, dilation: int) -> Tensor | None:
    """``(N, H, W)`` bool object masks of the prepared frames: resized as they were, then dilated."""
    if masks is None:
        return None
    masks = np.asarray(masks)
    if masks.ndim != 3 or len(masks) != len(frames):
        raise ValueError(
            f"`{name}` must be (N, H, W) masks, one per frame ({len(frames)}), got {masks.shape}"
        )
    h, w = frames.shape[1:3]
    out = masks.astype(np.uint8)
    kernel = np.ones((2 * dilation + 1, 2 * dilation + 1), np.uint8) if dilation else None
    resized = []
    for m in out:
        if m.shape != (h, w):
            # INTER_AREA then > 0: a pixel is the object's if any of the object covers it.
            m = (cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
        resized.append(cv2.dilate(m, kernel) if kernel is not None else m)
    return torch.from_numpy(np.stack(resized).astype(bool))


def _evenly_spaced(frames: Tensor, count: int) -> Tensor:
    return frames[_evenly_spaced_indices(len(frames), count)]


def _evenly_spaced_indices(length: int, count: int) -> np.ndarray:
    return np.linspace(0, length - 1, min(count, length)).round().astype(int)


@torch.no_grad()
def evaluate_reconstruction(
    model: FrameAutoencoder,
    frames: Tensor,
    foreground: Tensor | None = None,
    batch_size: int = 64,
    objects: Tensor | None = None,
) -> dict[str, float]:
    """Reconstruction fidelity on uint8 ``(N, H, W, 3)`` frames.

    Returns:
        ``heldout_psnr`` and ``heldout_ssim`` (means over frames) and, given the ``(N, H, W)`` boolean
        ``foreground``, ``heldout_fg_psnr``: the PSNR of the foreground pixels pooled; given the object
        masks ``objects``, ``heldout_object_psnr``: the PSNR of the object's pixels pooled.
    """
    was_training = model.training
    model.eval()
    recon = []
    for start in range(0, len(frames), batch_size):
        images = frames_to_tensor(frames[start : start + batch_size]).to(model.device, model.dtype)
        recon.append(tensor_to_frames(model(images)[0]))
    model.train(was_training)
    recon_frames, target = np.concatenate(recon), frames.numpy()
    result = {"heldout_psnr": float(np.mean(psnr(target, recon_frames)))}
    result["heldout_ssim"] = float(np.mean(ssim(target, recon_frames)))
    if foreground is not None:
        result["heldout_fg_psnr"] = masked_psnr(target, recon_frames, foreground.numpy())
    if objects is not None:
        result["heldout_object_psnr"] = masked_psnr(target, recon_frames, objects.numpy())
    return result


class _LossMeans:
    """Running means of the loss parts between evaluations (this process's)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, Tensor]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.item()
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}

    def pop_means(self) -> dict[str, float]:
        """The means since the last call, restarting them."""
        means = self.means()
        self.sums, self.count = {}, 0
        return means


def _save_final_model(model: FrameAutoencoder, out_dir: Path) -> None:
    # save_pretrained into a temporary directory, then rename its files into out_dir (which also holds the
    # metrics and checkpoints): the weights first, config.json last, so a config always has its weights.
    tmp = out_dir / ".tmp-final-model"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for path in sorted(tmp.iterdir(), key=lambda p: p.name == "config.json"):
        os.replace(path, out_dir / path.name)
    tmp.rmdir()


def train_codec(
    train_frames: np.ndarray,
    heldout_frames: np.ndarray,
    out_dir: str | Path,
    config: CodecTrainConfig | None = None,
    resume: bool = False,
    train_object_masks: np.ndarray | None = None,
    heldout_object_masks: np.ndarray | None = None,
) -> dict[str, float]:
    """Trains a :class:`FrameAutoencoder` on frames and saves it, loadable by ``load_codec(out_dir)``.

    Writes into ``out_dir`` (a run directory, :class:`~vap_env.train.harness.RunDirectory`): ``metrics.csv``
    (held-out PSNR/SSIM every ``eval_every`` steps), ``checkpoints/step-XXXXXX`` (``accelerator.save_state``),
    ``train_config.json`` and, at the end, the model's ``config.json`` and safetensors weights, with the
    latent scaling factor computed on the training frames.

    Args:
        train_frames: ``(N, H, W, 3)`` uint8 training frames.
        heldout_frames: ``(M, H, W, 3)`` uint8 frames never trained on, for the PSNR/SSIM evaluation.
        out_dir: Output directory (created if missing).
        config: Training configuration; defaults to ``CodecTrainConfig()``.
        resume: Continue from the last checkpoint in ``out_dir`` (model, optimizer, schedule, sampler and RNG
            states, at the same step). Without a checkpoint there, training starts from scratch.
        train_object_masks: ``(N, H, W)`` bool masks of the manipulated object in the training frames (the
            episodes' ``object_mask``), weighted by ``config.object_weight``; required when that is > 0.
        heldout_object_masks: The same for the held-out frames: adds ``heldout_object_psnr`` to the metrics.

    Returns:
        Final metrics: ``step``, ``start_step``, ``heldout_psnr``, ``heldout_ssim``, ``heldout_fg_psnr``
        (PSNR of the pixels that differ from the median training frame), ``heldout_object_psnr`` (given
        held-out object masks), ``train_loss`` (mean
        over the last evaluation interval), ``scaling_factor``, ``shift_factor``, ``params``, ``seconds``.

    Raises:
        ValueError: If the frames or masks are malformed, or ``config.object_weight`` > 0 without
            ``train_object_masks``.
        FileExistsError: If ``out_dir`` holds checkpoints and ``resume`` is False.
    """
    config = config or CodecTrainConfig()
    out_dir = Path(out_dir)
    run_dir = RunDirectory(out_dir, resume)
    train = _prepare_frames(train_frames, "train_frames", config.image_size, config.downsample)
    heldout = _prepare_frames(heldout_frames, "heldout_frames", config.image_size, config.downsample)
    if heldout.shape[1:] != train.shape[1:]:
        raise ValueError(
            f"held-out frames are {tuple(heldout.shape[1:])}, training frames {tuple(train.shape[1:])}"
        )
    if config.object_weight > 0 and train_object_masks is None:
        raise ValueError(
            f"`object_weight` is {config.object_weight} but no `train_object_masks` were given: pass the "
            "episodes' object masks (Episode.object_mask), or set `object_weight=0`"
        )
    train_objects = (
        _prepare_masks(train_object_masks, train, "train_object_masks", config.object_dilation)
        if config.object_weight > 0
        else None
    )
    heldout_objects = _prepare_masks(
        heldout_object_masks, heldout, "heldout_object_masks", config.object_dilation
    )
    picks = _evenly_spaced_indices(len(heldout), config.eval_frames)
    heldout = heldout[picks]
    heldout_objects = heldout_objects[picks] if heldout_objects is not None else None
    background = static_background(train)
    heldout_foreground = foreground_mask(heldout, background, config.foreground_threshold)

    # 1. Accelerator, threads and the seeded model (identical on every process).
    accelerator = create_accelerator(config.mixed_precision)
    share_cpu_threads(accelerator, config.num_threads)
    set_seed(config.seed)
    model = FrameAutoencoder(
        latent_channels=config.latent_channels,
        downsample=config.downsample,
        block_channels=config.block_channels,
        layers_per_block=config.layers_per_block,
        norm_num_groups=config.norm_num_groups,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    lr_scheduler = get_scheduler(
        "cosine", optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=config.steps
    )
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    sampler = _FrameSampler(len(train), config.batch_size, config.seed, accelerator.process_index)
    accelerator.register_for_checkpointing(sampler)
    checkpoints = Checkpoints(accelerator, run_dir.checkpoints, config.checkpoints_total_limit)

    # 2. Resume.
    if run_dir.resume_from is not None:
        checkpoints.load(run_dir.resume_from)
    start_step = sampler.step
    run_dir.write_config(accelerator, train=config, frames={"train": len(train), "heldout": len(heldout)})

    # 3. The loop.
    unwrapped: FrameAutoencoder = accelerator.unwrap_model(model)
    log = MetricsLog(accelerator, run_dir.metrics, METRIC_FIELDS, start_step)
    losses = _LossMeans()
    result: dict[str, float] = {"heldout_psnr": math.nan, "heldout_ssim": math.nan, "train_loss": math.nan}
    background = background.to(accelerator.device)
    progress = progress_bar(config.steps, "codec", start_step, accelerator)
    model.train()
    while sampler.step < config.steps:
        indices = sampler.next_indices()
        frames = train[indices].to(accelerator.device)
        images = frames_to_tensor(frames)
        pixel_weights = None
        if config.foreground_weight > 0:
            mask = foreground_mask(frames, background, config.foreground_threshold)
            pixel_weights = 1.0 + config.foreground_weight * mask[:, None].float()
        if train_objects is not None:
            objects = train_objects[indices].to(accelerator.device)[:, None].float()
            pixel_weights = (1.0 if pixel_weights is None else pixel_weights) + config.object_weight * objects
        with accelerator.autocast():
            recon, latents = model(images)
            parts = reconstruction_losses(recon, images, latents, pixel_weights)
            loss = sum(getattr(config, f"{k}_weight") * v for k, v in parts.items())
        optimizer_step(loss, optimizer, lr_scheduler, model.parameters(), config.grad_clip, accelerator)
        sampler.step += 1
        losses.add({"train_loss": loss, **parts})
        progress.update(1)
        last_step = sampler.step == config.steps
        if sampler.step % 10 == 0:
            progress.set_postfix(loss=f"{losses.means()['train_loss']:.4f}")
        if sampler.step % config.eval_every == 0 or last_step:
            means = losses.pop_means()
            if accelerator.is_main_process:
                evaluation = evaluate_reconstruction(
                    unwrapped, heldout, heldout_foreground, objects=heldout_objects
                )
                result |= evaluation
                log.write(sampler.step, {**means, "lr": lr_scheduler.get_last_lr()[0], **evaluation})
                psnr_text = f"{evaluation['heldout_psnr']:.2f}"
                progress.set_postfix(loss=f"{means['train_loss']:.4f}", psnr=psnr_text)
            result["train_loss"] = means["train_loss"]
        if sampler.step % config.checkpoint_every == 0 or last_step:
            checkpoints.save(sampler.step)
    progress.close()

    # 4. A resumed run that had already finished evaluates the final model once more.
    if accelerator.is_main_process and math.isnan(result["heldout_psnr"]):
        result |= evaluate_reconstruction(unwrapped, heldout, heldout_foreground, objects=heldout_objects)

    # 5. Latent scale from the training frames, then the final model.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped.eval()
        scale, shift = unwrapped.fit_latent_scale(_evenly_spaced(train, config.scale_frames))
        _save_final_model(unwrapped, out_dir)
        result |= {"scaling_factor": scale, "shift_factor": shift}
    accelerator.wait_for_everyone()
    params = sum(p.numel() for p in unwrapped.parameters())
    return {
        "step": sampler.step,
        "start_step": start_step,
        "params": params,
        "seconds": log.elapsed(),
    } | result
