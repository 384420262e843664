"""The training harness the world-model trainer, the codec trainer and the segmenter's fit run on.

What every training loop here needs, written once:

* :func:`create_accelerator` and :func:`share_cpu_threads`: the ``accelerate`` set-up, which runs unchanged
  under plain ``python`` (CPU or one GPU), ``accelerate launch`` (DDP on GPUs or nodes) and multi-process
  CPU runs (gloo; e.g. ``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2``);
* :class:`RunDirectory`: an output directory's layout, the refusal to train over a run's checkpoints, the
  checkpoint to resume from and the one saved-config file;
* :class:`Checkpoints`: ``accelerator.save_state`` checkpoints written atomically (into a temporary folder,
  completion marker last, then renamed), pruned to the last ones, and resumed from the last complete one;
* :class:`StepState`: the step counter every checkpoint carries (batches and noise are functions of it);
* :func:`create_ema` and :func:`ema_weights`: the exponential moving average (diffusers' ``EMAModel``);
* :func:`optimizer_step` and :func:`progress_bar`: one optimizer step, one progress bar;
* :class:`MetricsLog` (in :mod:`vap_env.train.metrics`): the rows of ``metrics.csv`` (and TensorBoard).

Layout of a run directory::

    OUT/
      checkpoints/step-XXXXXX  accelerator.save_state, with checkpoint.json (the completion marker) last
      metrics.csv              one row per logged step (:class:`~vap_env.train.metrics.MetricsLog`)
      train_config.json        the configs and data of the run (:meth:`RunDirectory.write_config`)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm.auto import tqdm

from vap_env.model.checkpoint import (
    COMPLETE_MARKER,
    checkpoint_name,
    last_checkpoint,
    list_checkpoints,
    mark_complete,
    prune_checkpoints,
    replace_directory,
)

if TYPE_CHECKING:  # imported where used: the segmenter's fit (inside evaluation) needs neither
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.csv"
CONFIG_FILE = "train_config.json"
LOGS_DIR = "logs"
"""TensorBoard event files, under the run directory."""


# ---------------------------------------------------------------------- accelerate


def create_accelerator(
    mixed_precision: str = "no",
    gradient_accumulation_steps: int = 1,
    project_dir: Path | None = None,
    tensorboard: bool = False,
    find_unused_parameters: bool = False,
) -> Accelerator:
    """The run's ``Accelerator``: the same on one CPU, one GPU, DDP over GPUs and gloo over CPU processes.

    Args:
        mixed_precision: ``"no"``, ``"bf16"`` or ``"fp16"`` autocast.
        gradient_accumulation_steps: Micro-batches per optimizer step (``accelerator.accumulate``).
        project_dir: Where trackers write (TensorBoard events); ``None`` for none.
        tensorboard: Log to TensorBoard too (needs the ``tensorboard`` package and ``project_dir``).
        find_unused_parameters: Tell DDP that some parameters may get no gradient in a step (a batch whose
            rows all drop their control skips the ControlNet); off, DDP would wait for them forever.

    Raises:
        ModuleNotFoundError: If ``tensorboard`` is asked for and not installed.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs

    if tensorboard:
        require_tensorboard()
    handlers = (
        [DistributedDataParallelKwargs(find_unused_parameters=True)] if find_unused_parameters else None
    )
    return Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps,
        log_with="tensorboard" if tensorboard else None,
        project_dir=str(project_dir) if project_dir is not None else None,
        kwargs_handlers=handlers,
    )


def share_cpu_threads(accelerator: Accelerator, num_threads: int | None) -> None:
    """On a CPU, gives each process ``num_threads`` torch threads (``None``: the cores divided evenly).

    Processes that each take every core (torch's default) oversubscribe it and run several times slower.
    """
    if accelerator.device.type == "cpu":
        torch.set_num_threads(num_threads or max(1, (os.cpu_count() or 1) // accelerator.num_processes))


def require_tensorboard() -> None:
    """Raises ``ModuleNotFoundError`` with the fix if the ``tensorboard`` package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError as error:
        raise ModuleNotFoundError(
            "log='tensorboard' needs the tensorboard package: pip install tensorboard (or use log='csv')"
        ) from error


# ---------------------------------------------------------------------- the run directory


class RunDirectory:
    """A training run's output directory: its paths, the checkpoint to resume from, the saved config.

    Args:
        out_dir: The directory (created when the config is written).
        resume: Continue from the last complete checkpoint there; without one, start afresh.

    Raises:
        FileExistsError: If ``out_dir`` holds checkpoints and ``resume`` is False.
    """

    def __init__(self, out_dir: str | Path, resume: bool) -> None:
        self.out_dir = Path(out_dir)
        self.checkpoints = self.out_dir / CHECKPOINTS_DIR
        self.metrics = self.out_dir / METRICS_FILE
        self.config_file = self.out_dir / CONFIG_FILE
        self.logs = self.out_dir / LOGS_DIR
        found = list_checkpoints(self.checkpoints, complete_only=False)
        if found and not resume:
            raise FileExistsError(
                f"{self.checkpoints} already holds checkpoints: resume (resume=True, --resume), or choose "
                "another out_dir"
            )
        self.resume_from = last_checkpoint(self.checkpoints) if resume else None
        for _, path in found:
            if not (path / COMPLETE_MARKER).is_file():
                logger.warning("%s has no %s (cut off mid-write?): not resumed from", path, COMPLETE_MARKER)

    def write_config(self, accelerator: Accelerator, **values: object) -> None:
        """Writes ``train_config.json`` (main process): dataclasses as dicts, paths as strings."""
        if accelerator.is_main_process:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.config_file, values)


def write_json(path: Path, values: dict[str, object]) -> None:
    """Writes ``values`` as indented JSON: dataclasses become dicts, paths strings, tuples lists."""

    def plain(value: object) -> object:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    path.write_text(json.dumps(plain(values), indent=2))


# ---------------------------------------------------------------------- checkpoints


class StepState:
    """The optimizer step, saved in every checkpoint beside accelerate's own state.

    ``accelerate`` saves custom state from the main process only, so nothing per process may live here:
    the trainers make their batches and noise pure functions of the step instead.
    """

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


class Checkpoints:
    """``accelerator.save_state`` checkpoints in ``directory/step-XXXXXX``, atomic and pruned.

    A checkpoint is written into ``.tmp-step-XXXXXX`` (a name every process agrees on: all of them take part
    in ``save_state``), the completion marker (:func:`~vap_env.model.checkpoint.mark_complete`) goes in last,
    and the folder is renamed into place. A process killed at any point leaves either the previous
    checkpoints only or the new one whole; a folder without its marker is never resumed from.

    Args:
        accelerator: The run's accelerator, with the model, optimizer, schedule and custom states prepared
            or registered (``register_for_checkpointing``) in the same order when saving and loading.
        directory: The checkpoints folder (created on the first save).
        keep: Checkpoints kept (the oldest are deleted); ``None`` keeps all.
    """

    def __init__(self, accelerator: Accelerator, directory: Path, keep: int | None) -> None:
        self.accelerator, self.directory, self.keep = accelerator, Path(directory), keep

    def save(self, step: int) -> Path:
        """Writes the checkpoint of ``step``, replacing one of the same step; returns its folder."""
        acc = self.accelerator
        final = self.directory / checkpoint_name(step)
        tmp = self.directory / f".tmp-{final.name}"
        if acc.is_main_process:
            self.directory.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)  # the remains of a save that was cut off
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            mark_complete(tmp, step)
            replace_directory(tmp, final)
            prune_checkpoints(self.directory, self.keep)
        acc.wait_for_everyone()
        return final

    def load(self, checkpoint: Path, ema: EMAModel | None = None) -> None:
        """Restores a checkpoint written by :meth:`save` (and moves the EMA weights to the device)."""
        self.accelerator.load_state(str(checkpoint))
        if ema is not None:
            ema.to(self.accelerator.device)  # accelerate loads custom state onto the CPU
        step = json.loads((checkpoint / COMPLETE_MARKER).read_text())["step"]
        self.accelerator.print(f"resumed from {checkpoint} at step {step}")


# ---------------------------------------------------------------------- EMA, steps, progress


def create_ema(accelerator: Accelerator, params: Sequence[torch.nn.Parameter], decay: float) -> EMAModel:
    """An exponential moving average of ``params``, registered for checkpointing.

    diffusers' ``EMAModel`` rather than a home-made one: the diffusers training scripts use it, and its
    ``state_dict``/``load_state_dict`` let accelerate checkpoint it with everything else.
    """
    from diffusers.training_utils import EMAModel

    ema = EMAModel(params, decay=decay)
    accelerator.register_for_checkpointing(ema)
    return ema


@contextlib.contextmanager
def ema_weights(ema: EMAModel | None, params: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Swaps the EMA weights into ``params`` for the block (e.g. an evaluation); nothing if ``ema`` is None."""
    if ema is None:
        yield
        return
    ema.store(params)
    ema.copy_to(params)
    try:
        yield
    finally:
        ema.restore(params)


def optimizer_step(
    loss: Tensor,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    params: Iterable[torch.nn.Parameter],
    grad_clip: float | None,
    accelerator: Accelerator | None = None,
) -> None:
    """Backward, gradient clipping, optimizer and schedule step, gradients cleared.

    Under ``accelerator.accumulate`` the prepared optimizer and schedule skip the micro-batches that do not
    end an accumulation, and clipping waits for the synchronised gradients. Without an accelerator (a
    small in-process fit) plain ``backward`` and ``clip_grad_norm_`` do the same on one device.
    """
    if accelerator is None:
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        accelerator.backward(loss)
        if accelerator.sync_gradients and grad_clip is not None:
            accelerator.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def progress_bar(
    total: int,
    desc: str,
    initial: int = 0,
    accelerator: Accelerator | None = None,
    disable: bool = False,
    unit: str = "it",
) -> tqdm:
    """A tqdm bar over the steps, shown once per machine (the local main process) and unless ``disable``."""
    hidden = disable or (accelerator is not None and not accelerator.is_local_main_process)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=hidden)
