"""Training loop of the per-frame codec (:class:`~vap_env.model.codec.FrameAutoencoder`).

One ``accelerate`` loop: it runs unchanged under plain ``python`` on a CPU and under ``accelerate launch``
(DDP on GPUs, several nodes). Frames live in memory as one uint8 tensor and batches are drawn from it at
random — no flips or crops, because the robot's geometry in the image is what the world model must learn.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from torch import Tensor
from tqdm.auto import tqdm

from vap_env.evaluate.image_metrics import masked_psnr, psnr, ssim
from vap_env.model.codec import FrameAutoencoder, frames_to_tensor, tensor_to_frames
from vap_env.train.config import CodecTrainConfig

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"
CHECKPOINTS_DIR = "checkpoints"
_METRIC_FIELDS = (
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
    "elapsed_s",
)


class _FrameSampler:
    """Draws the random batch indices of each step; its step count travels in the checkpoints.

    The indices are a pure function of (seed, process, step), so a resumed run draws the same batches as an
    uninterrupted one without saving a generator state per process (accelerate keeps custom states of the
    main process only).
    """

    def __init__(self, num_frames: int, batch_size: int, seed: int, process_index: int) -> None:
        self.num_frames, self.batch_size = num_frames, batch_size
        self.seed, self.process_index = seed, process_index
        self.step = 0

    def next_indices(self) -> Tensor:
        entropy = np.random.SeedSequence([self.seed, self.process_index, self.step]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(entropy))
        return torch.randint(self.num_frames, (self.batch_size,), generator=generator)

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


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


def _evenly_spaced(frames: Tensor, count: int) -> Tensor:
    return frames[np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)]


@torch.no_grad()
def evaluate_reconstruction(
    model: FrameAutoencoder, frames: Tensor, foreground: Tensor | None = None, batch_size: int = 64
) -> dict[str, float]:
    """Reconstruction fidelity on uint8 ``(N, H, W, 3)`` frames.

    Returns:
        ``heldout_psnr`` and ``heldout_ssim`` (means over frames) and, given the ``(N, H, W)`` boolean
        ``foreground``, ``heldout_fg_psnr``: the PSNR of the foreground pixels pooled.
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
    return result


def _last_checkpoint(checkpoint_dir: Path) -> Path | None:
    steps = [p for p in checkpoint_dir.glob("step-*") if p.is_dir() and p.name[5:].isdigit()]
    return max(steps, key=lambda p: int(p.name[5:]), default=None)


def _save_checkpoint(accelerator: Accelerator, checkpoint_dir: Path, step: int, limit: int | None) -> None:
    # Written to a temporary name and renamed, so a crash mid-save never leaves a checkpoint that looks whole.
    final = checkpoint_dir / f"step-{step:05d}"
    tmp = checkpoint_dir / f".tmp-step-{step:05d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        if limit is not None:
            kept = sorted(
                (p for p in checkpoint_dir.glob("step-*") if p.name[5:].isdigit()),
                key=lambda p: int(p.name[5:]),
            )
            for old in kept[:-limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()


class _MetricsLog:
    """Running means of the loss parts between evaluations, and the rows of ``metrics.csv``."""

    def __init__(self, path: Path, offset: float = 0.0) -> None:
        # ``offset``: training seconds before a resume, so that ``elapsed_s`` counts the whole run
        self.path, self.begin = path, time.perf_counter() - offset
        self.sums: dict[str, float] = {}
        self.count = 0

    @staticmethod
    def start(path: Path, start_step: int) -> float:
        """Starts the file, or on resume drops the rows written after the checkpoint being resumed.

        Returns:
            The ``elapsed_s`` of the last row kept (0 for a new run): the training time before the resume.
        """
        rows = []
        if start_step > 0 and path.exists():
            with path.open(newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["step"]) <= start_step]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=_METRIC_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        return float(rows[-1]["elapsed_s"]) if rows and rows[-1].get("elapsed_s") else 0.0

    def add(self, values: dict[str, Tensor]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.item()
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}

    def elapsed(self) -> float:
        return time.perf_counter() - self.begin

    def pop_means(self) -> dict[str, float]:
        """The means since the last call, restarting them."""
        means = self.means()
        self.sums, self.count = {}, 0
        return means

    def write(self, step: int, means: dict[str, float], lr: float, evaluation: dict[str, float]) -> None:
        row = {"step": step, **means, "lr": lr, **evaluation, "elapsed_s": self.elapsed()}
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=_METRIC_FIELDS).writerow(row)


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
) -> dict[str, float]:
    """Trains a :class:`FrameAutoencoder` on frames and saves it, loadable by ``load_codec(out_dir)``.

    Writes into ``out_dir``: ``metrics.csv`` (held-out PSNR/SSIM every ``eval_every`` steps),
    ``checkpoints/step-XXXXX`` (``accelerator.save_state``) and, at the end, the model's ``config.json`` and
    safetensors weights, with the latent scaling factor computed on the training frames.

    Args:
        train_frames: ``(N, H, W, 3)`` uint8 training frames.
        heldout_frames: ``(M, H, W, 3)`` uint8 frames never trained on, for the PSNR/SSIM evaluation.
        out_dir: Output directory (created if missing).
        config: Training configuration; defaults to ``CodecTrainConfig()``.
        resume: Continue from the last checkpoint in ``out_dir`` (model, optimizer, schedule, sampler and RNG
            states, at the same step). Without a checkpoint there, training starts from scratch.

    Returns:
        Final metrics: ``step``, ``start_step``, ``heldout_psnr``, ``heldout_ssim``, ``heldout_fg_psnr``
        (PSNR of the pixels that differ from the median training frame), ``train_loss`` (mean
        over the last evaluation interval), ``scaling_factor``, ``shift_factor``, ``params``, ``seconds``.

    Raises:
        ValueError: If the frames are malformed.
        FileExistsError: If ``out_dir`` holds checkpoints and ``resume`` is False.
    """
    config = config or CodecTrainConfig()
    out_dir = Path(out_dir)
    checkpoint_dir = out_dir / CHECKPOINTS_DIR
    last = _last_checkpoint(checkpoint_dir)
    if last is not None and not resume:
        raise FileExistsError(
            f"{checkpoint_dir} already holds checkpoints: pass resume=True or use another out_dir"
        )
    train = _prepare_frames(train_frames, "train_frames", config.image_size, config.downsample)
    heldout = _prepare_frames(heldout_frames, "heldout_frames", config.image_size, config.downsample)
    if heldout.shape[1:] != train.shape[1:]:
        raise ValueError(
            f"held-out frames are {tuple(heldout.shape[1:])}, training frames {tuple(train.shape[1:])}"
        )
    heldout = _evenly_spaced(heldout, config.eval_frames)
    background = static_background(train)
    heldout_foreground = foreground_mask(heldout, background, config.foreground_threshold)

    # 1. Accelerator, threads and the seeded model (identical on every process).
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    if accelerator.device.type == "cpu":
        torch.set_num_threads(
            config.num_threads or max(1, (os.cpu_count() or 1) // accelerator.num_processes)
        )
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

    # 2. Resume.
    if resume and last is not None:
        accelerator.load_state(str(last))
        logger.info("resumed from %s at step %d", last, sampler.step)
    start_step, trained_seconds = sampler.step, 0.0
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint_dir.mkdir(exist_ok=True)
        trained_seconds = _MetricsLog.start(out_dir / METRICS_FILE, start_step)
        with open(out_dir / "codec_train_config.json", "w") as f:
            f.write(json.dumps(asdict(config), indent=2))

    # 3. The loop.
    unwrapped: FrameAutoencoder = accelerator.unwrap_model(model)
    log = _MetricsLog(out_dir / METRICS_FILE, trained_seconds)
    result: dict[str, float] = {"heldout_psnr": math.nan, "heldout_ssim": math.nan, "train_loss": math.nan}
    background = background.to(accelerator.device)
    progress = tqdm(
        total=config.steps, initial=start_step, desc="codec", disable=not accelerator.is_local_main_process
    )
    model.train()
    while sampler.step < config.steps:
        frames = train[sampler.next_indices()].to(accelerator.device)
        images = frames_to_tensor(frames)
        pixel_weights = None
        if config.foreground_weight > 0:
            mask = foreground_mask(frames, background, config.foreground_threshold)
            pixel_weights = 1.0 + config.foreground_weight * mask[:, None].float()
        with accelerator.autocast():
            recon, latents = model(images)
            parts = reconstruction_losses(recon, images, latents, pixel_weights)
            loss = sum(getattr(config, f"{k}_weight") * v for k, v in parts.items())
        accelerator.backward(loss)
        if config.grad_clip is not None:
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        sampler.step += 1
        log.add({"train_loss": loss, **parts})
        progress.update(1)
        last_step = sampler.step == config.steps
        if sampler.step % 10 == 0:
            progress.set_postfix(loss=f"{log.means()['train_loss']:.4f}")
        if sampler.step % config.eval_every == 0 or last_step:
            means = log.pop_means()
            if accelerator.is_main_process:
                evaluation = evaluate_reconstruction(unwrapped, heldout, heldout_foreground)
                result |= evaluation
                log.write(sampler.step, means, lr_scheduler.get_last_lr()[0], evaluation)
                psnr_text = f"{evaluation['heldout_psnr']:.2f}"
                progress.set_postfix(loss=f"{means['train_loss']:.4f}", psnr=psnr_text)
            result["train_loss"] = means["train_loss"]
        if sampler.step % config.checkpoint_every == 0 or last_step:
            _save_checkpoint(accelerator, checkpoint_dir, sampler.step, config.checkpoints_total_limit)
    progress.close()

    # 4. A resumed run that had already finished evaluates the final model once more.
    if accelerator.is_main_process and math.isnan(result["heldout_psnr"]):
        result |= evaluate_reconstruction(unwrapped, heldout, heldout_foreground)

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
