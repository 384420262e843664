"""Training configurations: one dataclass per trainer, in a module without torch.

The trainers (:mod:`vap_env.train.world_model_trainer`, :mod:`vap_env.train.codec_trainer`) take them, and
the command line builds its flags, defaults and help from their fields and ``Args:`` docstrings, so each
default and each explanation is written once, here.
"""

from __future__ import annotations

import dataclasses

MIXED_PRECISIONS = ("no", "bf16", "fp16")
"""Autocast precisions ``accelerate`` runs (``no``: full precision), the default first."""
LOGGERS = ("csv", "tensorboard")
"""Where training metrics go: ``metrics.csv`` only, or TensorBoard events too; the default first."""


@dataclasses.dataclass
class WorldModelTrainConfig:
    """Configuration of :func:`train_world_model`.

    Args:
        steps: Optimizer steps in all (a resumed run continues up to this count).
        batch_size: Clips per micro-batch and process.
        gradient_accumulation_steps: Micro-batches per optimizer step.
        lr: Peak AdamW learning rate (reached after the linear warm-up, then the ``lr_schedule``: cosine
            decay by default).
        weight_decay: AdamW weight decay.
        warmup: Linear learning-rate warm-up steps.
        lr_schedule: ``"cosine"`` (decay to 0 at ``steps``) or ``"constant"`` after the warm-up.
        grad_clip: Gradient-norm clipping; ``None`` disables it.
        ema: Keep an exponential moving average (EMA) of the trainable weights; evaluation and the final
            model use it instead of the raw weights.
        ema_decay: Decay of that average.
        gradient_checkpointing: Recompute transformer/ControlNet activations in the backward pass (memory
            for compute; for big models on a GPU).
        mixed_precision: Autocast precision, passed to ``Accelerator``: ``no`` (full precision), ``bf16``
            (recent GPUs) or ``fp16``.
        eval_every: Steps between held-out evaluations: one-step generation PSNR and SSIM beside the
            repeat-last-frame baseline (also at step 0 of a fresh run and at the last step).
        eval_clips: Held-out (and training) clips evaluated, evenly spaced over the set.
        checkpoint_every: Steps between checkpoints (also at the last step).
        keep_checkpoints: Checkpoints kept (the oldest are deleted); ``None`` keeps all.
        val_episodes: Episodes held out from the end of the training directory when no validation directory
            is given; ``None`` uses ``val_fraction``.
        val_fraction: Fraction of the episodes held out (at least one) when ``val_episodes`` is ``None``.
        interaction_weight: Loss weight in the gripper region (1 switches the amplification off).
        interaction_radius: Radius of that region as a fraction of the image size.
        object_weight: Extra loss weight on the manipulated object, where it is in the target frames and
            where it was in the last context frame (its recorded masks, dilated by 2 pixels); 0 switches it
            off. See docs/results/interaction_experiments.md.
        contact_repeat: How many times per epoch each clip in which the object moves (at least 2 mm over the
            clip's target, :meth:`~vap_env.train.clips.ClipDataset.object_moves`) is drawn; others once. In
            the push data about one transition in six moves the cube: a repeat of 4 makes such clips about
            half of the batches. 1 draws every clip once.
        rollout_fraction: Share of each batch trained on the model's own rollouts (a closed-loop signal
            against autoregressive drift): in those clips the last ``rollout_frames`` context frames are not
            the recorded ones but what the model, at its current weights and with its own denoising steps,
            generates from the recorded frames before them and their prompts, decoded and encoded again as
            the imagined env feeds its frames back. Costs ``rollout_frames`` x steps forward passes per such
            clip. 0 switches it off.
        rollout_frames: Frames a rollout generates, one after another, each from the frames before it
            (beyond the model's context frames, later ones are generated from generated ones).
        log_every: Steps between rows of ``metrics.csv`` (mean loss, lr, it/s).
        seed: Seed of the weights, the clip order and the diffusion noise.
        log: ``csv`` (``metrics.csv`` only) or ``tensorboard`` (the same CSV, plus TensorBoard event files
            in ``out_dir/logs``; needs the ``tensorboard`` package).
        num_workers: ``DataLoader`` worker processes (the clips are in memory: 0 is usually fastest).
        cache_clips: Keep each episode's rendered prompts and warped frames on disk and reuse them in later
            runs and resumes on the same episodes (most of the set-up's time): ``$VAP_ENV_CACHE/clips``,
            default ``~/.cache/vap-env/clips``, keyed by the episode, the prompt kind and the rendering
            code (:mod:`vap_env.train.clip_cache`).
    """

    steps: int = 10_000
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 100
    lr_schedule: str = "cosine"
    grad_clip: float | None = 1.0
    ema: bool = False
    ema_decay: float = 0.999
    gradient_checkpointing: bool = False
    mixed_precision: str = MIXED_PRECISIONS[0]
    eval_every: int = 500
    eval_clips: int = 64
    checkpoint_every: int = 1_000
    keep_checkpoints: int | None = 2
    val_episodes: int | None = None
    val_fraction: float = 0.1
    interaction_weight: float = 3.0
    interaction_radius: float = 0.08
    object_weight: float = 0.0
    contact_repeat: int = 1
    rollout_fraction: float = 0.0
    rollout_frames: int = 1
    log_every: int = 10
    seed: int = 0
    log: str = LOGGERS[0]
    num_workers: int = 0
    cache_clips: bool = True

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "gradient_accumulation_steps", "eval_every", "eval_clips")
        for name in (*positive, "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.contact_repeat < 1:
            raise ValueError(f"`contact_repeat` must be >= 1 (1 switches it off), got {self.contact_repeat}")
        for name in ("warmup", "weight_decay", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"`lr` must be > 0, got {self.lr}")
        for name in ("grad_clip", "keep_checkpoints", "val_episodes"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be > 0 or None, got {getattr(self, name)}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must be in (0, 1), got {self.ema_decay}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"`val_fraction` must be in (0, 1), got {self.val_fraction}")
        choices = {
            "lr_schedule": ("cosine", "constant"),
            "mixed_precision": MIXED_PRECISIONS,
            "log": LOGGERS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.interaction_weight < 1:
            raise ValueError(
                f"`interaction_weight` must be >= 1 (1 switches it off), got {self.interaction_weight}"
            )
        if self.object_weight < 0:
            raise ValueError(f"`object_weight` must be >= 0 (0 switches it off), got {self.object_weight}")
        if not 0.0 <= self.rollout_fraction <= 1.0:
            raise ValueError(
                f"`rollout_fraction` must be in [0, 1] (0 switches it off), got {self.rollout_fraction}"
            )
        if self.rollout_frames < 1:
            raise ValueError(f"`rollout_frames` must be >= 1, got {self.rollout_frames}")
        if not 0.0 < self.interaction_radius <= 1.0:
            raise ValueError(f"`interaction_radius` must be in (0, 1], got {self.interaction_radius}")


@dataclasses.dataclass
class CodecTrainConfig:
    """Configuration of :func:`train_codec`.

    The defaults are sized for a CPU: with them, 1500 steps on 2050 Panda push frames (64x64, random actions)
    reached 32.9 dB held-out PSNR (SSIM 0.970, foreground 25.3 dB) in 21 minutes on one heavily shared core.

    Args:
        steps: Optimizer steps in all (a resumed run continues up to this count).
        batch_size: Frames per step and process.
        lr: Peak AdamW learning rate (linear warm-up, then cosine decay to 0 at ``steps``).
        warmup_steps: Linear warm-up steps.
        weight_decay: AdamW weight decay.
        grad_clip: Gradient-norm clipping; ``None`` disables it.
        eval_every: Steps between held-out PSNR/SSIM evaluations (also done at the last step).
        eval_frames: Held-out frames evaluated (evenly spaced over the held-out set).
        checkpoint_every: Steps between ``accelerator.save_state`` checkpoints (also done at the last step).
        checkpoints_total_limit: Checkpoints kept (the oldest are deleted); ``None`` keeps all.
        image_size: Side to which frames are resized (square) before training; by default (``None``) the
            recorded size.
        downsample: Spatial downsampling of the autoencoder (a power of two, 4 or 8 typically).
        latent_channels: Channels of a latent frame (per latent pixel).
        block_channels: Channels of each resolution level, from full resolution down.
        layers_per_block: ResNet blocks per level.
        norm_num_groups: GroupNorm groups.
        l1_weight: Weight of the L1 reconstruction loss.
        mse_weight: Weight of the squared-error loss.
        edge_weight: Weight of the L1 loss between Sobel gradients (sharp edges, without perceptual weights
            to download).
        latent_l2_weight: Weight of the mean squared latent, which keeps the latent scale from drifting.
        foreground_weight: Extra weight of the L1 and squared-error losses on foreground pixels: those that
            differ from the per-pixel median of the training frames (the static scene of a fixed camera) by
            more than ``foreground_threshold`` in some channel. Without it, small objects (a goal marker of
            a few pixels) are traded for the background that fills most of the frame: on Panda push frames
            (64x64, 1500 steps) weight 10 raised the held-out foreground PSNR from 18.7 to 25.3 dB, the goal
            marker's from 10 to 27 dB, and the whole frame's from 30.8 to 32.9 dB. 0 disables it.
        foreground_threshold: uint8 difference from the median frame above which a pixel is foreground; also
            defines the pixels of the ``heldout_fg_psnr`` metric.
        object_weight: Extra weight of the L1 and squared-error losses on the manipulated object's pixels
            (the recorded object masks, dilated by ``object_dilation``), on top of the foreground weight. A
            cube of ~120 of 16384 pixels is too small a share of the foreground for that weight to keep it:
            without this term the codecs reconstructed the cube 12 dB below the frame
            (docs/results/interaction_experiments.md, experiments 2 and 3). Needs the object masks
            (``train_codec(..., train_object_masks=...)``; the command line passes the episodes' own); 0
            disables it.
        object_dilation: Pixels by which the object masks grow before weighting and scoring
            (``heldout_object_psnr``), so the object's edges count.
        scale_frames: Training frames (evenly spaced) used to compute the latent scaling factor at the end.
        seed: Seed of the weights and of the frame sampling.
        mixed_precision: Autocast precision, passed to ``Accelerator``: ``no`` (full precision), ``bf16``
            (recent GPUs) or ``fp16``.
        num_threads: CPU threads per process for torch; ``None`` uses the cores divided by the processes.
    """

    steps: int = 3_000
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    eval_every: int = 250
    eval_frames: int = 512
    checkpoint_every: int = 500
    checkpoints_total_limit: int | None = 2
    image_size: int | None = None
    downsample: int = 4
    latent_channels: int = 8
    block_channels: tuple[int, ...] = (16, 32, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    edge_weight: float = 0.5
    latent_l2_weight: float = 1e-4
    foreground_weight: float = 10.0
    foreground_threshold: int = 24
    object_weight: float = 30.0
    object_dilation: int = 1
    scale_frames: int = 2_048
    seed: int = 0
    mixed_precision: str = MIXED_PRECISIONS[0]
    num_threads: int | None = None

    def __post_init__(self) -> None:
        self.block_channels = tuple(int(c) for c in self.block_channels)
        for name in ("steps", "batch_size", "eval_every", "eval_frames", "checkpoint_every", "scale_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        weights = ("l1_weight", "mse_weight", "edge_weight", "latent_l2_weight", "foreground_weight")
        weights += ("object_weight",)
        for name in ("warmup_steps", "weight_decay", "foreground_threshold", "object_dilation", *weights):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"`lr` must be > 0, got {self.lr}")
        if self.l1_weight + self.mse_weight == 0:
            raise ValueError("`l1_weight` and `mse_weight` cannot both be 0: nothing would be reconstructed")
        for name in ("grad_clip", "checkpoints_total_limit", "num_threads"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be > 0 or None, got {getattr(self, name)}")
        if self.latent_channels < 1:
            raise ValueError(f"`latent_channels` must be >= 1, got {self.latent_channels}")
        from vap_env.model.codec import FrameAutoencoder  # the architecture check lives with the model

        FrameAutoencoder.check_args(
            self.downsample, self.block_channels, self.layers_per_block, self.norm_num_groups
        )
        if self.image_size is not None and (self.image_size < 1 or self.image_size % self.downsample):
            raise ValueError(
                f"`image_size` must be a positive multiple of `downsample` ({self.downsample}), "
                f"got {self.image_size}"
            )
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(
                f"`mixed_precision` must be one of {list(MIXED_PRECISIONS)}, got {self.mixed_precision!r}"
            )
