"""The held-out split of recorded episodes, the one rule every trainer uses (no torch here).

Held-out data are whole *episodes*, never frames of training episodes: explicit validation directories,
or else the last episodes of *each* training directory (``val_episodes`` of them, or ``val_fraction`` of
the directory's episodes, at least one), so that every task of a pooled set is validated on. The
world-model trainer and the codec command both split through :func:`split_episodes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vap_env.data import Episode, EpisodeDataset


def as_dirs(value: str | Path | Sequence[str | Path] | None) -> list[Path] | None:
    """One directory or several, as a list of paths (``None`` stays ``None``)."""
    if value is None:
        return None
    return [Path(value)] if isinstance(value, str | Path) else [Path(v) for v in value]


def heldout_count(num_episodes: int, val_episodes: int | None, val_fraction: float) -> int:
    """Episodes held out of a directory of ``num_episodes``: ``val_episodes``, or the fraction (>= 1)."""
    return val_episodes or max(1, round(val_fraction * num_episodes))


def split_episodes(
    data_dirs: str | Path | Sequence[str | Path],
    val_data_dirs: str | Path | Sequence[str | Path] | None = None,
    val_episodes: int | None = None,
    val_fraction: float = 0.1,
) -> tuple[list[Episode], list[Episode], dict[str, list[str]]]:
    """Loads the training and held-out episodes of one or more dataset directories.

    Several training directories (e.g. one per task) are pooled, in order. Without validation directories,
    the last :func:`heldout_count` episodes of each training directory are held out.

    Args:
        data_dirs: Training directories (``vap-env collect`` output).
        val_data_dirs: Held-out directories; ``None`` holds out the end of each training directory.
        val_episodes: Episodes held out of each training directory; ``None`` uses ``val_fraction``.
        val_fraction: Fraction of each training directory held out (rounded, at least one episode).

    Returns:
        ``(train, heldout, files)`` where ``files`` names the episode files of each part (``"train"``,
        ``"heldout"``): bare file names for a single training directory, ``DIR/file`` for several and for
        validation directories.

    Raises:
        ValueError: If no directory is given, ``val_episodes`` or ``val_fraction`` is out of range, a
            directory holds no episodes, or holding out leaves a directory with none to train on.
    """
    data_dirs, val_data_dirs = as_dirs(data_dirs), as_dirs(val_data_dirs)
    if not data_dirs:
        raise ValueError("no training data directory given")
    if val_episodes is not None and val_episodes < 1:
        raise ValueError(f"`val_episodes` must be >= 1 or None, got {val_episodes}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"`val_fraction` must be in (0, 1), got {val_fraction}")
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
            count = heldout_count(len(data), val_episodes, val_fraction)
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
