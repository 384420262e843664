"""Training loop of the action-to-video world model (:class:`~vap_env.model.world_model.ActionToVideoModel`).

One ``accelerate`` loop that runs unchanged under plain ``python`` (CPU or one GPU), ``accelerate launch``
(DDP on several GPUs or nodes) and multi-process CPU runs (gloo; e.g. ``ACCELERATE_USE_CPU=1 torchrun
--nproc_per_node 2``); only the main process writes files and evaluates. Stages as in the
paper: ``pretrain`` (the base transformer learns video continuation, conditioning off), ``control`` (base
frozen; ControlNet + LoRA learn the action prompts; starts from a pretrain output, whose base takes any
prompt kind and the ControlNet-only / LoRA-only ablations, see :func:`build_model`) and ``joint``
(everything from scratch, for small models).

The codec is frozen, so the latents of every training frame are computed once and kept in memory; the
loop draws clips of cached latents, their prompts and interaction-region loss weights. Validation is on
held-out *episodes* (a separate directory, or the last episodes of the training one): one-step generation
PSNR/SSIM beside the repeat-last-frame baseline on the same clips, and the diffusion loss at fixed noise.

Output directory::

    OUT/
      model/                   the final model (ActionToVideoModel.save_pretrained, written atomically;
                               its codec/ folder is the codec it was trained with)
      checkpoints/step-XXXXXX  accelerator.save_state: weights, optimizer, LR schedule, step, EMA (the clip
                               order and the noise are functions of the step)
      metrics.csv              loss, lr, it/s every `log_every` steps; evaluation columns at eval steps
      train_config.json        the training and model configs, data directories, held-out episodes
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch import Tensor, nn
from tqdm.auto import tqdm

from vap_env.data import Episode, EpisodeDataset
from vap_env.evaluate.image_metrics import psnr, ssim
from vap_env.model.checkpoint import checkpoint_name, last_checkpoint, prune_checkpoints
from vap_env.model.codec import frames_to_tensor, load_codec, tensor_to_frames
from vap_env.model.config import WorldModelConfig
from vap_env.model.world_model import ActionToVideoModel, load_config
from vap_env.train.clips import ClipConfig, ClipDataset
from vap_env.train.config import WorldModelTrainConfig

MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.csv"
RUN_FILE = "train_config.json"
EVAL_FIELDS = (
    "train_eval_loss",
    "heldout_loss",
    "heldout_psnr",
    "heldout_ssim",
    "baseline_psnr",
    "baseline_ssim",
)
METRIC_FIELDS = ("step", "loss", "lr", "it_per_s", *EVAL_FIELDS, "elapsed_s")
_EVAL_SEED = 1234  # fixed noise for every evaluation, so that the numbers are comparable across steps


# ---------------------------------------------------------------------- data


def _dirs(value: str | Path | Sequence[str | Path] | None) -> list[Path] | None:
    """One directory or several, as a list of paths (``None`` stays ``None``)."""
    if value is None:
        return None
    return [Path(value)] if isinstance(value, (str, Path)) else [Path(v) for v in value]


def split_episodes(
    data_dirs: Path | Sequence[Path],
    val_data_dirs: Path | Sequence[Path] | None,
    config: WorldModelTrainConfig,
) -> tuple[list[Episode], list[Episode], dict[str, list[str]]]:
    """Loads the training and held-out episodes; held-out ones are whole episodes, never frames of others.

    Several training directories (e.g. one per task) are pooled. Without validation directories, the last
    episodes of *each* training directory are held out (``val_episodes`` or ``val_fraction`` of each), so
    every task of a mixed set is validated on.

    Returns:
        ``(train, heldout, files)`` where ``files`` names the episode files of each part: bare file names
        for a single training directory, ``DIR/file`` for several and for validation directories.

    Raises:
        ValueError: If a directory is not a dataset or holds no episodes, or too few episodes are left to
            train on.
    """
    data_dirs, val_data_dirs = _dirs(data_dirs), _dirs(val_data_dirs)
    if not data_dirs:
        raise ValueError("no training data directory given")
    train, heldout, train_names, heldout_names = [], [], [], []
    for data_dir in data_dirs:
        data = EpisodeDataset(data_dir)
        if len(data) == 0:
            raise ValueError(f"dataset {data_dir} holds no episodes; record some with `vap-env collect`")
        names = [
            entry["file"] if len(data_dirs) == 1 else f"{data_dir}/{entry['file']}" for entry in data.episodes
        ]
        keep = len(data)
        if val_data_dirs is None:
            count = config.val_episodes or max(1, round(config.val_fraction * len(data)))
            if len(data) - count < 1:
                raise ValueError(
                    f"{data_dir} holds {len(data)} episodes: holding out {count} leaves none to train on; "
                    "record more or pass a separate validation directory"
                )
            keep = len(data) - count
            heldout += [data[i] for i in range(keep, len(data))]
            heldout_names += names[keep:]
        train += [data[i] for i in range(keep)]
        train_names += names[:keep]
    for val_dir in val_data_dirs or []:
        heldout_data = EpisodeDataset(val_dir)
        if len(heldout_data) == 0:
            raise ValueError(f"validation dataset {val_dir} holds no episodes")
        heldout += list(heldout_data)
        heldout_names += [f"{val_dir}/{entry['file']}" for entry in heldout_data.episodes]
    return train, heldout, {"train": train_names, "heldout": heldout_names}


def check_data_fits(config: WorldModelConfig, episodes: list[Episode], where: str) -> None:
    """Raises ``ValueError`` if the episodes are of another robot or image size than the model."""
    robots, sizes = {e.robot for e in episodes}, {tuple(e.image_size) for e in episodes}
    if robots != {config.robot} or sizes != {tuple(config.image_size)}:
        found = ", ".join(f"{r} at {h}x{w}" for r in sorted(robots) for h, w in sorted(sizes))
        h, w = config.image_size
        raise ValueError(
            f"the data in {where} is {found}, but the model is for {config.robot} at {h}x{w}: record data "
            "for the model's robot and image size, or train a new model"
        )


def make_clips(
    model_config: WorldModelConfig,
    config: WorldModelTrainConfig,
    train: list[Episode],
    heldout: list[Episode],
    where: tuple[str, str],
) -> tuple[ClipDataset, ClipDataset]:
    """The training and held-out clips for the model, after checking that the episodes fit it.

    Args:
        model_config: The model (robot, image size, prompt kind, frames, state size).
        config: The interaction-region settings.
        train: Training episodes.
        heldout: Held-out episodes.
        where: The directories of both, for error messages.

    Raises:
        ValueError: If the episodes are of another robot, image size or state size than the model.
    """
    check_data_fits(model_config, train, where[0])
    check_data_fits(model_config, heldout, where[1])
    clip_config = ClipConfig(
        prompt=model_config.prompt,
        context_frames=model_config.context_frames,
        target_frames=model_config.frames_per_step,
        interaction_weight=config.interaction_weight,
        interaction_radius=config.interaction_radius,
    )
    train_clips, heldout_clips = ClipDataset(train, clip_config), ClipDataset(heldout, clip_config)
    if model_config.prompt == "state" and train_clips.prompts[0].shape[-1] != model_config.state_dim:
        raise ValueError(
            f"the data's state prompts have {train_clips.prompts[0].shape[-1]} values, the model's "
            f"`state_dim` is {model_config.state_dim}"
        )
    return train_clips, heldout_clips


class LatentClips(torch.utils.data.Dataset):
    """The clips of a :class:`ClipDataset` with their frames replaced by cached codec latents.

    A per-frame codec (``temporal_factor`` 1) encodes every frame once and clips are cut from those; a
    temporal codec encodes each clip whole. Items: ``latents`` ``(Tc' + Tf', C, h, w)`` float32,
    ``prompts`` as the clip dataset gives them, ``weight`` ``(Tf, 1, H, W)``.

    Args:
        clips: The clips.
        model: The model whose codec encodes them (on its device); the cache lives on the CPU.
        batch_size: Frames (or clips) encoded at a time.
    """

    def __init__(self, clips: ClipDataset, model: ActionToVideoModel, batch_size: int = 64) -> None:
        self.clips = clips
        self.per_frame = model.codec.temporal_factor == 1
        self.cache: list[Tensor] = []
        with torch.no_grad():
            if self.per_frame:
                for frames in clips.frames:  # (T, H, W, 3) uint8 per episode
                    parts = [
                        model.codec.encode(
                            frames_to_tensor(frames[i : i + batch_size])[None].to(model.device)
                        )
                        for i in range(0, len(frames), batch_size)
                    ]
                    self.cache.append(torch.cat(parts, dim=1)[0].float().cpu())
            else:
                for start in range(0, len(clips), batch_size):
                    items = [clips[i] for i in range(start, min(start + batch_size, len(clips)))]
                    context = torch.stack([item["context"] for item in items])
                    target = torch.stack([item["target"] for item in items])
                    self.cache.extend(model.encode_clip(context, target).float().cpu().unbind(0))

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = self.clips[index]
        if self.per_frame:
            episode, start = self.clips.index[index]
            latents = self.cache[episode][start : start + self.clips.config.clip_length]
        else:
            latents = self.cache[index]
        return {"latents": latents, "prompts": item["prompts"], "weight": item["weight"]}


class EpochBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Endless batches of clip indices: a fresh seeded permutation per epoch, sharded over processes.

    Batch ``k`` is a pure function of ``(seed, k, process)``, so a run resumed at micro-batch ``k`` draws
    exactly the batches an uninterrupted run would, with no sampler state to save (and ``DataLoader``
    workers prefetching ahead change nothing). Each process takes every ``num_processes``-th index of the
    permutation, as ``accelerate``'s sharding would; the last incomplete batch of an epoch is dropped.

    Args:
        num_items: Clips in the dataset.
        batch_size: Clips per batch.
        seed: Seed of the permutations.
        process_index: This process.
        num_processes: Processes sharing the data.
        start: The first batch to yield (micro-batches already consumed).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        process_index: int = 0,
        num_processes: int = 1,
        start: int = 0,
    ) -> None:
        self.batches_per_epoch = num_items // num_processes // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"{num_items} training clips cannot fill a batch of {batch_size} on each of {num_processes} "
                "process(es): lower the batch size or record more episodes"
            )
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.process_index, self.num_processes, self.start = process_index, num_processes, start

    def __iter__(self) -> Iterator[list[int]]:
        batch, epoch, order = self.start, -1, torch.empty(0, dtype=torch.long)
        while True:
            if batch // self.batches_per_epoch != epoch:
                epoch = batch // self.batches_per_epoch
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                order = torch.randperm(self.num_items, generator=generator)[
                    self.process_index :: self.num_processes
                ]
            offset = (batch % self.batches_per_epoch) * self.batch_size
            yield order[offset : offset + self.batch_size].tolist()
            batch += 1


# ---------------------------------------------------------------------- model


def build_model(
    model_config: WorldModelConfig | None, codec_dir: Path | None, init_from: Path | None, seed: int
) -> ActionToVideoModel:
    """The model to train: new from ``model_config``, or the weights of ``init_from``.

    With ``init_from``, ``model_config`` (optional) may change only the training fields
    (:data:`~vap_env.model.config.TRAINING_FIELDS`: stage, control dropout, context noise, sampling steps);
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
            if model_config.stage == "control":
                raise ValueError(
                    "stage 'control' trains a ControlNet beside a frozen base: pass `init_from` a pretrain "
                    "output (its model/ directory), or train stage 'joint' from scratch"
                )
            return ActionToVideoModel(model_config, codec)
        if model_config is not None and load_config(init_from).attachment_differences(model_config):
            # a new conditioning on the saved base (which refuses any other change, or a non-pretrain model)
            return ActionToVideoModel.from_pretrained_base(init_from, model_config, codec=codec)
        model = ActionToVideoModel.from_pretrained(init_from, codec=codec)
        trained_stage = model.config.stage
        if model_config is not None:
            differences = model.config.architecture_differences(model_config)
            if differences:
                listed = ", ".join(f"{k}: saved {a!r}, requested {b!r}" for k, (a, b) in differences.items())
                raise ValueError(f"the model config does not fit the model in {init_from} ({listed})")
            for name in ("control_dropout", "context_noise_log_sigma", "context_noise_log_sigma_std"):
                setattr(model.config, name, getattr(model_config, name))
            model.config.num_inference_steps = model_config.num_inference_steps
            model.set_stage(model_config.stage)
        if trained_stage == "pretrain" and model.config.stage != "pretrain" and model.controlnet is not None:
            model.recopy_controlnet()
    return model


class DiffusionLoss(nn.Module):
    """The model's latent training loss as a module's ``forward``.

    DDP (through ``accelerator.prepare``) synchronises gradients only for calls of the wrapped module's
    ``forward``, not of other methods such as ``latent_training_loss``.
    """

    def __init__(self, model: ActionToVideoModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, latents: Tensor, prompts: Tensor | None, weight: Tensor, generator: torch.Generator
    ) -> Tensor:
        """Loss of ``(B, Tc' + Tf', C, h, w)`` latents (:meth:`ActionToVideoModel.latent_training_loss`)."""
        return self.model.latent_training_loss(latents, prompts, generator, loss_weight=weight)


class TrainState:
    """The optimizer step, saved in every checkpoint beside accelerate's state, and the diffusion noise.

    The noise generator is re-seeded from ``(seed, micro-batch, process)`` before every micro-batch, so, like
    the clip order, the noise is a function of the step: nothing to save per process (accelerate saves
    custom state from the main process only) and a resumed run draws what an uninterrupted one would.
    """

    def __init__(self, seed: int, process_index: int, device: torch.device) -> None:
        self.step = 0
        self.seed, self.process_index = seed, process_index
        self.generator = torch.Generator(device)

    def noise(self, micro_batch: int) -> torch.Generator:
        """The generator for micro-batch ``micro_batch`` of this process."""
        return self.generator.manual_seed((self.seed * 1_000_003 + micro_batch) * 1_009 + self.process_index)

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


# ---------------------------------------------------------------------- evaluation

# Identical uint8 frames have infinite PSNR; 60 dB is above any real difference (one grey level everywhere
# is 48 dB) and keeps the mean finite when the repeat-last-frame baseline meets a still frame.
PSNR_CAP_DB = 60.0


def evaluation_batch(clips: ClipDataset, count: int) -> dict[str, Tensor]:
    """``count`` clips evenly spaced stacked: ``context``, ``target``, ``prompts``, ``weight``."""
    step = max(1.0, len(clips) / count)
    indices = sorted({int(i * step) for i in range(min(count, len(clips)))})
    items = [clips[i] for i in indices]
    return {
        key: torch.stack([item[key] for item in items]) for key in ("context", "target", "prompts", "weight")
    }


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
        ``heldout_psnr``/``heldout_ssim`` of the generated frames and ``baseline_psnr``/``baseline_ssim`` of
        the last context frame repeated, per frame in dB and [0, 1], averaged over clips and frames.
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
    repeated = tensor_to_frames(heldout["context"][:, -1:].expand_as(heldout["target"]))
    for name, frames_u8 in (("heldout", tensor_to_frames(torch.cat(frames))), ("baseline", repeated)):
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


# ---------------------------------------------------------------------- the loop


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
        resume: Continue from the last checkpoint in ``out_dir`` at its step, with its weights, optimizer,
            schedule and EMA (clip order and noise are functions of the step); without one, start afresh.

    Returns:
        ``step``, ``start_step``, ``seconds``, ``it_per_s`` (optimizer steps per second, evaluation
        excluded), ``loss`` (mean of the last log window), the last evaluation's metrics (``heldout_psnr``,
        ``baseline_psnr``, ``heldout_loss``, ...), the step-0 evaluation of a fresh run with the prefix
        ``initial_``, ``trainable`` (parameter counts) and ``model_dir``.

    Raises:
        FileExistsError: If ``out_dir`` holds checkpoints and ``resume`` is False.
        ValueError: If a directory is not a dataset, the data does not fit the model (robot, image size,
            state size), the configs disagree or the codec is not the model's.
    """
    config = train_config or WorldModelTrainConfig()
    out_dir = Path(out_dir)
    last = last_checkpoint(out_dir / CHECKPOINTS_DIR)
    if last is not None and not resume:
        raise FileExistsError(
            f"{out_dir / CHECKPOINTS_DIR} already holds checkpoints: resume, or choose another out_dir"
        )
    if config.log == "tensorboard":
        _require_tensorboard()
    codec_dir, init_from = (Path(p) if p is not None else None for p in (codec_dir, init_from))
    data_dirs, val_data_dirs = _dirs(data_dir), _dirs(val_data_dir)

    # Data and model are identical on every process: the weights are seeded, the latent cache deterministic.
    train_episodes, heldout_episodes, files = split_episodes(data_dirs, val_data_dirs, config)
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with="tensorboard" if config.log == "tensorboard" else None,
        project_dir=str(out_dir / "logs"),
        # a batch whose rows all drop their control skips the ControlNet, leaving its parameters unused
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    model = build_model(model_config, codec_dir, init_from, config.seed)
    where = (", ".join(map(str, data_dirs)), ", ".join(map(str, val_data_dirs or data_dirs)))
    train_clips, heldout_clips = make_clips(model.config, config, train_episodes, heldout_episodes, where)
    model.to(accelerator.device)
    if config.gradient_checkpointing:
        for part in (model.transformer, model.controlnet):
            if part is not None:
                part.enable_gradient_checkpointing()
    eval_sets = (
        evaluation_batch(heldout_clips, config.eval_clips),
        evaluation_batch(train_clips, config.eval_clips),
    )
    run = _Run(accelerator, model, config, out_dir, LatentClips(train_clips, model), eval_sets)
    if last is not None:
        run.load(last)
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_run_file(
            out_dir / RUN_FILE,
            train=config,
            model=model.config,
            data_dir=data_dirs if len(data_dirs) > 1 else data_dirs[0],
            val_data_dir=val_data_dirs
            if val_data_dirs is None or len(val_data_dirs) > 1
            else val_data_dirs[0],
            codec_dir=codec_dir,
            init_from=init_from,
            episodes=files,
            clips={"train": len(train_clips), "heldout": len(heldout_clips)},
            num_processes=accelerator.num_processes,
        )
    return run.fit()


class _Run:
    """One training run: the prepared model, optimizer and schedule, and the loop over them.

    Args:
        accelerator: The run's accelerator.
        model: The model, on the accelerator's device, in its training stage.
        config: How to train.
        out_dir: The output directory.
        clips: The cached training clips.
        eval_sets: Held-out and training clips of :func:`evaluation_batch` for :func:`evaluate`.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: ActionToVideoModel,
        config: WorldModelTrainConfig,
        out_dir: Path,
        clips: LatentClips,
        eval_sets: tuple[dict[str, Tensor], dict[str, Tensor]],
    ) -> None:
        self.accelerator, self.model, self.config, self.out_dir, self.clips = (
            accelerator,
            model,
            config,
            out_dir,
            clips,
        )
        self.eval_sets = eval_sets
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
            DiffusionLoss(model), optimizer, lr_scheduler
        )
        self.state = TrainState(config.seed, accelerator.process_index, accelerator.device)
        accelerator.register_for_checkpointing(self.state)
        # diffusers' EMAModel rather than a home-made one: the diffusers training scripts use it, and its
        # state_dict/load_state_dict let accelerate checkpoint it with everything else
        self.ema = EMAModel(self.params, decay=config.ema_decay) if config.ema else None
        if self.ema is not None:
            accelerator.register_for_checkpointing(self.ema)

    def load(self, checkpoint: Path) -> None:
        """Restores a checkpoint written by :meth:`save`."""
        self.accelerator.load_state(str(checkpoint))
        if self.ema is not None:
            self.ema.to(self.accelerator.device)  # accelerate loads custom state onto the CPU
        self.accelerator.print(f"resumed from {checkpoint} at step {self.state.step}")

    def save(self) -> None:
        """``accelerator.save_state`` into ``checkpoints/step-XXXXXX``, atomically, keeping the last ones.

        Written under a temporary name and renamed, so a crash mid-save never leaves a checkpoint that looks
        whole; every process takes part in ``save_state``.
        """
        acc, directory = self.accelerator, self.out_dir / CHECKPOINTS_DIR
        final = directory / checkpoint_name(self.state.step)
        tmp = directory / f".tmp-{final.name}"
        if acc.is_main_process:
            directory.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            prune_checkpoints(directory, self.config.keep_checkpoints)
        acc.wait_for_everyone()

    def evaluate(self) -> dict[str, float]:
        """:func:`evaluate` on the main process (with the EMA weights if kept); ``{}`` on the others."""
        metrics: dict[str, float] = {}
        if self.accelerator.is_main_process:
            if self.ema is not None:
                self.ema.store(self.params)
                self.ema.copy_to(self.params)
            with self.accelerator.autocast():
                metrics = evaluate(self.model, *self.eval_sets)
            if self.ema is not None:
                self.ema.restore(self.params)
        self.accelerator.wait_for_everyone()
        return metrics

    def train_step(self, batch: dict[str, Tensor], micro_batch: int) -> Tensor:
        """One micro-batch: forward, backward and (at the end of an accumulation) the optimizer step."""
        acc = self.accelerator
        batch = {k: v.to(acc.device, non_blocking=True) for k, v in batch.items()}
        with acc.accumulate(self.loss_module):
            noise = self.state.noise(micro_batch)
            loss = self.loss_module(batch["latents"], batch["prompts"], batch["weight"], noise)
            acc.backward(loss)
            if acc.sync_gradients and self.config.grad_clip is not None:
                acc.clip_grad_norm_(self.params, self.config.grad_clip)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
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
        log = _MetricsLog(acc, self.out_dir, start_step, config)
        result: dict[str, object] = {"start_step": start_step}
        if start_step == 0:
            initial = self.evaluate()
            result |= {f"initial_{k}": v for k, v in initial.items()}
            log.write(0, initial, begin)
        accumulation = config.gradient_accumulation_steps
        batches = self._batches(start_step * accumulation)
        progress = tqdm(
            total=config.steps,
            initial=start_step,
            desc=f"world model ({self.model.config.stage})",
            disable=not acc.is_local_main_process,
        )
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
                log.write(state.step, row, begin)
            if state.step % config.checkpoint_every == 0 or final:
                self.save()
        progress.close()
        if start_step >= config.steps:  # resumed after the last step: evaluate the final weights once
            metrics = self.evaluate()
        final_values = {"step": state.step, "seconds": time.perf_counter() - begin, "trainable": report}
        return result | metrics | final_values | {"model_dir": str(self._save_model())}

    def _batches(self, start: int) -> Iterator[dict[str, Tensor]]:
        """Endless training batches from micro-batch ``start`` on (see :class:`EpochBatchSampler`)."""
        acc, config = self.accelerator, self.config
        sampler = EpochBatchSampler(
            len(self.clips), config.batch_size, config.seed, acc.process_index, acc.num_processes, start
        )
        loader = torch.utils.data.DataLoader(
            self.clips, batch_sampler=sampler, num_workers=config.num_workers
        )
        return iter(loader)

    def _save_model(self) -> Path:
        """Writes the final model (the EMA weights if kept) to ``out_dir/model``; ends the run's trackers."""
        model_dir = self.out_dir / MODEL_DIR
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


class _MetricsLog:
    """``metrics.csv`` (main process) and TensorBoard (when asked for).

    A resumed run keeps the rows up to its checkpoint and drops later ones.
    """

    def __init__(
        self, accelerator: Accelerator, out_dir: Path, start_step: int, config: WorldModelTrainConfig
    ) -> None:
        self.accelerator, self.path, self.tensorboard = (
            accelerator,
            out_dir / METRICS_FILE,
            config.log == "tensorboard",
        )
        if accelerator.is_main_process:
            rows = []
            if start_step > 0 and self.path.exists():
                with self.path.open(newline="") as f:
                    rows = [row for row in csv.DictReader(f) if int(row["step"]) <= start_step]
            with self.path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
        if self.tensorboard:
            hparams = {
                k: v for k, v in dataclasses.asdict(config).items() if isinstance(v, int | float | str | bool)
            }
            accelerator.init_trackers("world_model", config=hparams)

    def write(self, step: int, values: dict[str, float], begin: float) -> None:
        row = {"step": step, **values, "elapsed_s": time.perf_counter() - begin}
        if self.accelerator.is_main_process:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=METRIC_FIELDS).writerow(row)
        if self.tensorboard:
            self.accelerator.log(values, step=step)


def read_metrics(out_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` as floats (missing values are NaN)."""
    with (Path(out_dir) / METRICS_FILE).open(newline="") as f:
        return [{k: float(v) if v != "" else math.nan for k, v in row.items()} for row in csv.DictReader(f)]


def _write_run_file(path: Path, **values: object) -> None:
    def plain(value: object) -> object:
        if dataclasses.is_dataclass(value):
            return dataclasses.asdict(value)
        if isinstance(value, list):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    path.write_text(json.dumps({k: plain(v) for k, v in values.items()}, indent=2))


def _require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError as error:
        raise ModuleNotFoundError(
            "log='tensorboard' needs the tensorboard package: pip install tensorboard (or use log='csv')"
        ) from error
