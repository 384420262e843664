"""Files of models and training runs: atomic directory writes, checked weight files, training checkpoints.

One place for the file logic that the world model, the codec and the trainers share:

* :func:`atomic_directory` writes a directory so that a crash never leaves a half-written one in place;
* :func:`check_weights_file`, :func:`check_model_weights`, :func:`load_weights_file` and
  :func:`save_weights_file` read and write safetensors with errors that name the file;
* :func:`checkpoint_name`, :func:`mark_complete`, :func:`list_checkpoints`, :func:`last_checkpoint` and
  :func:`prune_checkpoints` manage the ``step-XXXXXX`` folders of training checkpoints (written by
  :class:`vap_env.train.harness.Checkpoints`): a folder counts only once its completion marker is in it;
* :func:`module_fingerprint` identifies a module's configuration and weights (which codec a world model was
  trained with).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from diffusers import ConfigMixin
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

CHECKPOINT_PREFIX = "step-"
COMPLETE_MARKER = "checkpoint.json"
"""The file written last into a checkpoint folder: without it the folder is not a checkpoint."""


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yields a temporary sibling of ``target`` to write into, renamed onto ``target`` on success.

    A crash mid-save leaves the previous ``target`` intact (and a ``.tmp`` folder to delete).
    """
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_directory(tmp, target)


def replace_directory(source: Path, target: Path) -> None:
    """Renames the finished directory ``source`` onto ``target`` (a sibling), replacing any old ``target``.

    The old ``target`` is first moved aside, so that at every moment one whole version is in place or being
    renamed (``os.replace`` cannot replace a non-empty directory in one step).
    """
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(source, target)
        shutil.rmtree(old)
    else:
        os.replace(source, target)


# ---------------------------------------------------------------------- weight files


def check_weights_file(path: Path) -> None:
    """Checks that a safetensors file exists and is complete (header and data length), naming it if not."""
    if not path.is_file():
        raise FileNotFoundError(f"missing weight file {path}: it does not exist")
    try:
        with safe_open(path, framework="pt"):
            pass
    except (SafetensorError, OSError) as error:
        raise OSError(f"corrupt weight file {path}: {error} (truncated or not safetensors)") from error


def check_model_weights(directory: Path) -> None:
    """Checks a diffusers model folder's weights: the single file, or every shard of a sharded index."""
    index = directory / f"{SAFETENSORS_WEIGHTS_NAME}.index.json"
    if not index.is_file():
        check_weights_file(directory / SAFETENSORS_WEIGHTS_NAME)
        return
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (json.JSONDecodeError, KeyError, AttributeError) as error:
        raise OSError(f"corrupt weight index {index}: {error}") from error
    for shard in shards:
        check_weights_file(directory / shard)


def load_weights_file(path: Path) -> dict[str, Tensor]:
    """Reads a safetensors file onto the CPU, with errors that name the file."""
    check_weights_file(path)
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise OSError(f"corrupt weight file {path}: {error}") from error


def save_weights_file(tensors: Mapping[str, Tensor], path: Path) -> None:
    """Writes tensors (detached, made contiguous: safetensors stores dense buffers) to a safetensors file."""
    save_file({name: value.detach().contiguous() for name, value in tensors.items()}, path)


# ---------------------------------------------------------------------- training checkpoints


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint at ``step``: ``step-000123`` (sorts by name below 10**6 steps)."""
    return f"{CHECKPOINT_PREFIX}{step:06d}"


def mark_complete(checkpoint: Path, step: int) -> None:
    """Writes the completion marker into a checkpoint folder: the last file of a checkpoint.

    The marker is flushed to disk before it returns, so that the rename that follows cannot reach the disk
    ahead of it.
    """
    with (checkpoint / COMPLETE_MARKER).open("w") as f:
        f.write(json.dumps({"step": step, "complete": True}))
        f.flush()
        os.fsync(f.fileno())


def is_complete(checkpoint: Path) -> bool:
    """Whether a checkpoint folder holds its completion marker (:func:`mark_complete`)."""
    return (checkpoint / COMPLETE_MARKER).is_file()


def list_checkpoints(directory: Path, complete_only: bool = True) -> list[tuple[int, Path]]:
    """The ``(step, path)`` of the ``step-<digits>`` folders in ``directory``, by step; ``[]`` if none.

    Temporary folders of an interrupted save (hidden names) are never checkpoints. With ``complete_only``,
    folders without the completion marker (cut off mid-write, copied in part, or written before markers
    existed) are skipped too.
    """
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        digits = path.name.removeprefix(CHECKPOINT_PREFIX)
        named = path.is_dir() and path.name.startswith(CHECKPOINT_PREFIX) and digits.isdigit()
        if named and (not complete_only or is_complete(path)):
            found.append((int(digits), path))
    return sorted(found)


def last_checkpoint(directory: Path) -> Path | None:
    """The complete checkpoint folder of the highest step in ``directory``, or ``None``."""
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1][1] if checkpoints else None


def prune_checkpoints(directory: Path, keep: int | None) -> list[Path]:
    """Deletes all but the ``keep`` latest complete checkpoints (``None`` keeps all); returns those deleted.

    Incomplete folders are left alone: a save of their step replaces them.
    """
    if keep is None:
        return []
    doomed = [path for _, path in list_checkpoints(directory)[:-keep]] if keep > 0 else []
    for path in doomed:
        shutil.rmtree(path)
    return doomed


# ---------------------------------------------------------------------- identity


def module_fingerprint(module: torch.nn.Module) -> str:
    """A short hash of a module's class, its diffusers configs and its weights.

    It covers the ``config`` of every diffusers ``ConfigMixin`` in the module tree (a codec's latent
    scaling and shift live there, not in its weights; keys starting with ``_``, such as the diffusers
    version, are left out) and every state-dict tensor by name, shape and value. Floating-point values are
    hashed after rounding to bfloat16, so that a float32 module and its bfloat16 cast (a GPU run) share a
    fingerprint while two differently trained modules do not.

    Args:
        module: Any module.

    Returns:
        16 hex digits of a SHA-256.
    """
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, sub in module.named_modules():
        if isinstance(sub, ConfigMixin):
            config = {k: v for k, v in dict(sub.config).items() if not k.startswith("_")}
            text = json.dumps(config, sort_keys=True, default=str)
            digest.update(f"{name}:{type(sub).__qualname__}:{text}".encode())
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu()
        if value.is_floating_point():
            value = value.to(torch.bfloat16).view(torch.int16)
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
