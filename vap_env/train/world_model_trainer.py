"""Training loop of the action-to-video world model (:class:`~vap_env.model.cogvideox.model.ActionToVideoModel`).

One ``accelerate`` loop on the training harness (:mod:`vap_env.train.harness`) that runs unchanged under
plain ``python`` (CPU or one GPU), ``accelerate launch`` (DDP on several GPUs or nodes) and multi-process
CPU runs (gloo; e.g. ``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2``); only the main process writes
files and evaluates. Stages as in the paper: ``pretrain`` (the base transformer learns video continuation,
conditioning off), ``control`` (base frozen; ControlNet + LoRA learn the action prompts; starts from a
pretrain output, whose base takes any prompt kind and the ControlNet-only / LoRA-only ablations, see
:func:`~vap_env.train.model_setup.build_model`), ``joint`` (everything from scratch, for small models) and
``distill`` (progressive distillation of a trained model into half its sampling steps, towards the frozen
model it starts from: :meth:`~vap_env.model.cogvideox.training.ActionToVideoTrainingMixin.distillation_loss`).

The parts live beside this loop: the held-out split in :mod:`vap_env.train.splits`, the cached latent
clips and their batch order in :mod:`vap_env.train.latent_clips`, the model to train in
:mod:`vap_env.train.model_setup`, the validation in :mod:`vap_env.train.validation`.

Output directory::

    OUT/
      model/                   the final model (ActionToVideoModel.save_pretrained, written atomically;
                               its codec/ folder is the codec it was trained with)
      checkpoints/step-XXXXXX  accelerator.save_state: weights, optimizer, LR schedule, step, EMA (the clip
                               order and the noise are functions of the step), checkpoint.json last
      metrics.csv              loss, lr, it/s every `log_every` steps; evaluation columns at eval steps
      train_config.json        the training and model configs, data directories, held-out episodes
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from torch import Tensor

from vap_env.model.cogvideox.model import ActionToVideoModel
from vap_env.model.config import WorldModelConfig
from vap_env.model.object_dynamics import fit_object_dynamics
from vap_env.train.clip_cache import ClipCache
from vap_env.train.clips import OBJECT_MOVES
from vap_env.train.config import WorldModelTrainConfig
from vap_env.train.harness import (
    Checkpoints,
    RunDirectory,
    StepState,
    create_accelerator,
    create_ema,
    ema_weights,
    optimizer_step,
    progress_bar,
    require_tensorboard,
)
from vap_env.train.latent_clips import EpochBatchSampler, LatentClips, make_clips
from vap_env.train.metrics import MetricsLog
from vap_env.train.model_setup import DiffusionLoss, build_model, build_teacher
from vap_env.train.splits import as_dirs, split_episodes
from vap_env.train.validation import EVAL_FIELDS, evaluate, evaluation_batch

__all__ = ["METRIC_FIELDS", "MODEL_DIR", "TrainState", "WorldModelTrainConfig", "train_world_model"]

MODEL_DIR = "model"
METRIC_FIELDS = ("step", "loss", "lr", "it_per_s", *EVAL_FIELDS, "elapsed_s")


class TrainState(StepState):
    """The optimizer step (saved in every checkpoint) and the diffusion noise.

    The noise generator is re-seeded from ``(seed, micro-batch, process)`` before every micro-batch, so, like
    the clip order, the noise is a function of the step: nothing to save per process (accelerate saves
    custom state from the main process only) and a resumed run draws what an uninterrupted one would.
    """

    def __init__(self, seed: int, process_index: int, device: torch.device) -> None:
        super().__init__()
        self.seed, self.process_index = seed, process_index
        self.generator = torch.Generator(device)

    def noise(self, micro_batch: int) -> torch.Generator:
        """The generator for micro-batch ``micro_batch`` of this process."""
        return self.generator.manual_seed((self.seed * 1_000_003 + micro_batch) * 1_009 + self.process_index)


def train_world_model(
    data_dir: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    model_config: WorldModelConfig | None,
    train_config: WorldModelTrainConfig | None = None,
    codec_dir: str | Path | None = None,
    init_from: str | Path | None = None,
    val_data_dir: str | Path | Sequence[str | Path] | None = None,
    resume: bool = False,
) -> dict[str, object]:
    """Trains the world model on recorded episodes and writes it to ``out_dir/model``.

    Args:
        data_dir: Recorded episodes (``vap-env collect``): one directory, or several to pool (e.g. one per
            task; all of the model's robot and image size).
        out_dir: Output directory (see the module docstring for its layout).
        model_config: The model to train; its ``stage`` is the training stage. With ``init_from`` it may be
            ``None`` (the saved config, stage included) or differ only in training fields.
        train_config: How to train; ``WorldModelTrainConfig()`` when ``None``.
        codec_dir: A saved codec (e.g. a ``train_codec`` output) to train on, frozen; with ``init_from`` it
            must be the codec that model was trained with. ``None``: the ``init_from`` model's codec, or a
            pixel codec for a new model.
        init_from: A saved model (``save_pretrained`` directory) to start from; required for ``control``.
        val_data_dir: Held-out episodes, one directory or several; ``None`` holds out the last episodes of
            each ``data_dir``.
        resume: Continue from the last complete checkpoint in ``out_dir`` at its step, with its weights,
            optimizer, schedule and EMA (clip order and noise are functions of the step); without one,
            start afresh.

    Returns:
        ``step``, ``start_step``, ``seconds``, ``it_per_s`` (optimizer steps per second, evaluation
        excluded), ``loss`` (mean of the last log window), the last evaluation's metrics (``heldout_psnr``,
        ``baseline_psnr``, ``heldout_loss``, ...), the step-0 evaluation of a fresh run with the prefix
        ``initial_``, ``trainable`` (parameter counts) and ``model_dir``.

    Raises:
        FileExistsError: If ``out_dir`` holds checkpoints and ``resume`` is False.
        ValueError: If a directory is not a dataset, the data does not fit the model (robot, image size,
            state size), the configs disagree, the codec is not the model's or ``rollout_fraction`` is set
            in the ``pretrain`` or ``distill`` stage.
    """
    config = train_config or WorldModelTrainConfig()
    run_dir = RunDirectory(out_dir, resume)
    if config.log == "tensorboard":
        require_tensorboard()
    codec_dir, init_from = (Path(p) if p is not None else None for p in (codec_dir, init_from))
    data_dirs, val_data_dirs = as_dirs(data_dir), as_dirs(val_data_dir)

    # Data and model are identical on every process: the weights are seeded, the latent cache deterministic.
    train_episodes, heldout_episodes, files = split_episodes(
        data_dirs, val_data_dirs, config.val_episodes, config.val_fraction
    )
    accelerator = create_accelerator(
        config.mixed_precision,
        config.gradient_accumulation_steps,
        project_dir=run_dir.logs,
        tensorboard=config.log == "tensorboard",
        # a batch whose rows all drop their control skips the ControlNet, leaving its parameters unused
        find_unused_parameters=True,
    )
    model = build_model(model_config, codec_dir, init_from, config.seed)
    if config.rollout_fraction and model.config.stage not in ("joint", "control"):
        raise ValueError(
            f"training on the model's own rollouts (`rollout_fraction`) is for the `joint` and `control` "
            f"stages, not `{model.config.stage}`: set it to 0"
        )
    teacher = None
    if model.config.stage == "distill":
        assert init_from is not None  # build_model refuses a new model in this stage
        teacher = build_teacher(init_from, model.config.num_inference_steps).to(accelerator.device)
    where = (", ".join(map(str, data_dirs)), ", ".join(map(str, val_data_dirs or data_dirs)))
    if model.config.object_warp:
        # deterministic (seeded), so every process, and a resumed run, fits the same weights
        dynamics, figures = fit_object_dynamics(
            list(train_episodes), list(heldout_episodes), progress=accelerator.is_local_main_process
        )
        model.object_dynamics = dynamics.requires_grad_(False)
        accelerator.print(
            f"object dynamics: held-out one-step error {figures.get('heldout_error_mm', float('nan')):.2f} mm "
            f"where the object moves (no motion: {figures.get('heldout_still_mm', float('nan')):.2f} mm), "
            f"{figures['train_seconds']:.0f} s"
        )
    cache = ClipCache() if config.cache_clips else None
    train_clips, heldout_clips = make_clips(
        model.config,
        config,
        train_episodes,
        heldout_episodes,
        where,
        cache,
        progress=accelerator.is_local_main_process,
    )
    if cache is not None:
        accelerator.print(
            f"clip cache {cache.root}: {cache.hits} episode(s) read, {cache.misses} rendered and stored"
        )
    model.to(accelerator.device)
    if config.gradient_checkpointing:
        for part in (model.transformer, model.controlnet):
            if part is not None:
                part.enable_gradient_checkpointing()
    eval_sets = (
        evaluation_batch(heldout_clips, config.eval_clips),
        evaluation_batch(train_clips, config.eval_clips),
    )
    latent_clips = LatentClips(train_clips, model)
    if model.config.target == "change" and model.config.change_scale is None:
        model.config.change_scale = _change_scale(model, latent_clips, accelerator)
    run = _Run(accelerator, model, config, run_dir, latent_clips, eval_sets, teacher)
    if run_dir.resume_from is not None:
        run.checkpoints.load(run_dir.resume_from, run.ema)
    run_dir.write_config(
        accelerator,
        train=config,
        model=model.config,
        data_dir=data_dirs if len(data_dirs) > 1 else data_dirs[0],
        val_data_dir=val_data_dirs if val_data_dirs is None or len(val_data_dirs) > 1 else val_data_dirs[0],
        codec_dir=codec_dir,
        init_from=init_from,
        episodes=files,
        clips={"train": len(train_clips), "heldout": len(heldout_clips)},
        num_processes=accelerator.num_processes,
    )
    return run.fit()


def _change_scale(model: ActionToVideoModel, clips: LatentClips, accelerator: Accelerator) -> float:
    """1 / the standard deviation of a ``change`` model's target on the training clips.

    The target is a frame's latent change from the context as the model sees it, context noise included
    (:meth:`ActionToVideoModel.to_target`), so its variance is the clean change's plus the context noise's
    mean square, ``E[sigma^2] = exp(2 mu + 2 s^2)`` for ``log sigma ~ N(mu, s^2)``. Deterministic (the
    latent cache is), so a resumed run measures the scale its first start did.
    """
    c = model.config
    std = clips.change_std(model.num_target_latents)
    noise = 0.0
    if c.context_noise_log_sigma is not None:
        noise = math.exp(2 * c.context_noise_log_sigma + 2 * c.context_noise_log_sigma_std**2)
    if not std > 0:
        raise ValueError("the training clips' latents do not change between frames: nothing to learn")
    scale = 1.0 / math.sqrt(std**2 + noise)
    accelerator.print(
        f"target 'change': latent change std {std:.4f}, context noise rms {math.sqrt(noise):.4f}, "
        f"change_scale {scale:.4f}"
    )
    return scale


class _Run:
    """One training run: the prepared model, optimizer and schedule, and the loop over them.

    Args:
        accelerator: The run's accelerator.
        model: The model, on the accelerator's device, in its training stage.
        config: How to train.
        run_dir: The output directory.
        clips: The cached training clips.
        eval_sets: Held-out and training clips of :func:`evaluation_batch` for :func:`evaluate`.
        teacher: The frozen teacher of a ``distill`` run (:func:`~vap_env.train.model_setup.build_teacher`),
            else ``None``.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: ActionToVideoModel,
        config: WorldModelTrainConfig,
        run_dir: RunDirectory,
        clips: LatentClips,
        eval_sets: tuple[dict[str, Tensor], dict[str, Tensor]],
        teacher: ActionToVideoModel | None = None,
    ) -> None:
        self.accelerator, self.model, self.config, self.run_dir, self.clips = (
            accelerator,
            model,
            config,
            run_dir,
            clips,
        )
        self.eval_sets = eval_sets
        self.repeats = None
        if config.contact_repeat > 1:
            moves = clips.clips.object_moves()
            self.repeats = 1 + (config.contact_repeat - 1) * moves.astype(np.int64)
            drawn = self.repeats[moves].sum() / self.repeats.sum()
            accelerator.print(
                f"contact clips (the object moves >= {OBJECT_MOVES * 1000:.0f} mm): {moves.sum()} of {len(moves)} "
                f"({moves.mean():.1%}), drawn {config.contact_repeat}x: {drawn:.1%} of the clips of an epoch"
            )
        self.params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        # a prepared scheduler steps once per process at each optimizer step (accelerate's convention)
        n = accelerator.num_processes
        lr_scheduler = get_scheduler(
            "cosine" if config.lr_schedule == "cosine" else "constant_with_warmup",
            optimizer,
            num_warmup_steps=config.warmup * n,
            num_training_steps=config.steps * n,
        )
        self.loss_module, self.optimizer, self.lr_scheduler = accelerator.prepare(
            DiffusionLoss(model, teacher, config.rollout_fraction), optimizer, lr_scheduler
        )
        # registered in this order at every start, so that a checkpoint's custom states load into their own
        self.state = TrainState(config.seed, accelerator.process_index, accelerator.device)
        accelerator.register_for_checkpointing(self.state)
        self.ema = create_ema(accelerator, self.params, config.ema_decay) if config.ema else None
        self.checkpoints = Checkpoints(accelerator, run_dir.checkpoints, config.keep_checkpoints)

    def evaluate(self) -> dict[str, float]:
        """:func:`evaluate` on the main process (with the EMA weights if kept); ``{}`` on the others."""
        metrics: dict[str, float] = {}
        if self.accelerator.is_main_process:
            with ema_weights(self.ema, self.params), self.accelerator.autocast():
                metrics = evaluate(self.model, *self.eval_sets)
        self.accelerator.wait_for_everyone()
        return metrics

    def train_step(self, batch: dict[str, Tensor], micro_batch: int) -> Tensor:
        """One micro-batch: forward, backward and (at the end of an accumulation) the optimizer step."""
        acc = self.accelerator
        batch = {k: v.to(acc.device, non_blocking=True) for k, v in batch.items()}
        with acc.accumulate(self.loss_module):
            noise = self.state.noise(micro_batch)
            loss = self.loss_module(batch["latents"], batch["prompts"], batch["weight"], noise)
            optimizer_step(loss, self.optimizer, self.lr_scheduler, self.params, self.config.grad_clip, acc)
        if acc.sync_gradients and self.ema is not None:
            self.ema.step(self.params)
        return loss.detach()

    def fit(self) -> dict[str, object]:
        """Trains up to ``config.steps``, logging, evaluating and checkpointing; saves the final model."""
        acc, config, state = self.accelerator, self.config, self.state
        report = self.model.trainable_parameters_report()
        acc.print(
            f"stage {self.model.config.stage}; trainable parameters {report} (total {sum(report.values()):,})"
        )
        start_step, begin = state.step, time.perf_counter()
        tensorboard = ("world_model", config) if config.log == "tensorboard" else None
        log = MetricsLog(acc, self.run_dir.metrics, METRIC_FIELDS, start_step, tensorboard)
        result: dict[str, object] = {"start_step": start_step}
        if start_step == 0:
            initial = self.evaluate()
            result |= {f"initial_{k}": v for k, v in initial.items()}
            log.write(0, initial)
        accumulation = config.gradient_accumulation_steps
        batches = self._batches(start_step * accumulation)
        progress = progress_bar(config.steps, f"world model ({self.model.config.stage})", start_step, acc)
        window, micro_batch = _Window(acc.device), start_step * accumulation
        metrics: dict[str, float] = {}
        self.loss_module.train()
        while state.step < config.steps:
            tick = time.perf_counter()
            window.add(self.train_step(next(batches), micro_batch))
            micro_batch += 1
            if not acc.sync_gradients:
                window.time += time.perf_counter() - tick
                continue
            state.step += 1
            window.end_step(time.perf_counter() - tick)
            progress.update(1)
            final, row = state.step == config.steps, {}
            if state.step % config.log_every == 0 or final:
                row = window.summary(acc, self.lr_scheduler.get_last_lr()[0])
                progress.set_postfix(loss=f"{row['loss']:.4f}")
                result |= {"loss": row["loss"], "it_per_s": row["it_per_s"]}
            if state.step % config.eval_every == 0 or final:
                metrics = self.evaluate()
                row |= metrics
            if row:
                log.write(state.step, row)
            if state.step % config.checkpoint_every == 0 or final:
                self.checkpoints.save(state.step)
        progress.close()
        if start_step >= config.steps:  # resumed after the last step: evaluate the final weights once
            metrics = self.evaluate()
        final_values = {"step": state.step, "seconds": time.perf_counter() - begin, "trainable": report}
        return result | metrics | final_values | {"model_dir": str(self._save_model())}

    def _batches(self, start: int) -> Iterator[dict[str, Tensor]]:
        """Endless training batches from micro-batch ``start`` on (see :class:`EpochBatchSampler`)."""
        acc, config = self.accelerator, self.config
        sampler = EpochBatchSampler(
            len(self.clips), config.batch_size, config.seed, acc.process_index, acc.num_processes, start,
            self.repeats,
        )  # fmt: skip
        loader = torch.utils.data.DataLoader(
            self.clips, batch_sampler=sampler, num_workers=config.num_workers
        )
        return iter(loader)

    def _save_model(self) -> Path:
        """Writes the final model (the EMA weights if kept) to ``out_dir/model``; ends the run's trackers."""
        model_dir = self.run_dir.out_dir / MODEL_DIR
        if self.accelerator.is_main_process:
            if self.ema is not None:
                self.ema.copy_to(self.params)
            self.model.save_pretrained(model_dir)
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()
        return model_dir


class _Window:
    """Loss and time of the optimizer steps since the last log row."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss, self.micro_batches, self.steps, self.time = torch.zeros((), device=self.device), 0, 0, 0.0

    def add(self, loss: Tensor) -> None:
        self.loss += loss
        self.micro_batches += 1

    def end_step(self, seconds: float) -> None:
        self.steps += 1
        self.time += seconds

    def summary(self, accelerator: Accelerator, lr: float) -> dict[str, float]:
        """Mean loss over the processes, learning rate and steps per second; then starts a new window."""
        loss = accelerator.reduce(self.loss / self.micro_batches, reduction="mean").item()
        row = {"loss": loss, "lr": lr, "it_per_s": self.steps / self.time}
        self.reset()
        return row
