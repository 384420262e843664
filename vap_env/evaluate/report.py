"""Writing an evaluation's results: ``report.json``, ``report.md``, plots and side-by-side videos.

Every file is written to a temporary name and renamed, so an interrupted evaluation never leaves a
half-written report. NaN (an undefined correlation, a horizon no episode reached) is ``null`` in JSON.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from vap_env.evaluate.markdown import fmt as _fmt
from vap_env.evaluate.markdown import markdown

if TYPE_CHECKING:
    from vap_env.evaluate.replay import Replay

VIDEO_SIDE = 256  # px: a 64 px frame is upscaled 4x (nearest) to be visible
VIDEO_FPS = 6


# ------------------------------------------------------------------------------------------- files
def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Calls ``write(tmp)`` for a temporary sibling of ``path`` (same extension), then renames it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def plain(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays as Python numbers/lists and non-finite floats as ``None``."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: dict) -> Path:
    """Writes ``plain(data)`` as strict JSON (no NaN), atomically."""
    text = json.dumps(plain(data), indent=1, allow_nan=False)
    return _atomic(path, lambda tmp: tmp.write_text(text))


def write_benchmark(path: Path, results: dict, render: Callable[[dict], str]) -> Path:
    """A benchmark's ending: records the command line in ``results``, writes them, prints ``render(results)``.

    The command is the one that reproduces the file (``python benchmarks/NAME.py ...``), so a committed
    result says how it was made.
    """
    results["command"] = " ".join(["python", *sys.argv])
    written = write_json(path, results)
    print(render(results))
    print(f"wrote {path}")
    return written


def slug(spec: str) -> str:
    """A file-name form of a policy spec.

    ``scripted:noise=0.3,hesitation=0.1`` -> ``scripted_noise=0.3_hesitation=0.1``.
    """
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", spec).strip("_")


# ------------------------------------------------------------------------------------------- videos
def upscale(frame: np.ndarray, side: int = VIDEO_SIDE) -> np.ndarray:
    """Nearest-neighbour upscaling by the integer factor that brings the height to at least ``side``."""
    factor = max(1, math.ceil(side / frame.shape[0]))
    return np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)


def side_by_side(
    panels: Sequence[np.ndarray], labels: Sequence[str] | None = None, side: int = VIDEO_SIDE
) -> np.ndarray:
    """Upscaled ``(H, W, 3)`` uint8 panels in a row, each labelled, padded to a multiple of 16 px (codecs)."""
    row = []
    for i, panel in enumerate(panels):
        big = np.ascontiguousarray(upscale(panel, side))
        if labels:
            cv2.putText(big, labels[i], (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(
                big, labels[i], (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
            )
        row.append(big)
    image = np.concatenate(row, axis=1)
    pad_h, pad_w = -image.shape[0] % 16, -image.shape[1] % 16
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = VIDEO_FPS) -> Path:
    """Writes ``(H, W, 3)`` uint8 frames (H, W multiples of 16) as an H.264 mp4, atomically."""
    import imageio.v2 as imageio

    def write(tmp: Path) -> None:
        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=16) as writer:
            for frame in frames:
                writer.append_data(np.asarray(frame, dtype=np.uint8))

    return _atomic(Path(path), write)


def write_png(path: Path, image: np.ndarray) -> Path:
    """Writes an RGB uint8 image as PNG, atomically."""
    return _atomic(path, lambda tmp: cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)))


def replay_frames(replay: Replay) -> list[np.ndarray]:
    """Side-by-side frames of an open-loop replay: simulator | imagined | prompt, one per step ``0..L``."""
    sim = replay.episode.frames[: len(replay.imagined) + 1]
    imagined = np.concatenate([sim[:1], replay.imagined])  # step 0 is the shared start frame
    labels = ("simulator", "imagined", "prompt")
    return [side_by_side((s, g, p), labels) for s, g, p in zip(sim, imagined, replay.prompts, strict=True)]


def write_videos(out_dir: Path, replays: list[Replay], per_policy: int, progress: bool = False) -> list[str]:
    """``videos/<policy>_ep<k>.mp4`` for the first ``per_policy`` replays of each policy, and
    ``videos/preview.png`` (the middle frame of the first video); returns paths relative to ``out_dir``."""
    written, seen = [], {}
    chosen = []
    for replay in replays:
        spec = replay.episode.policy
        k = seen.get(spec, 0)
        seen[spec] = k + 1
        if k < per_policy:
            chosen.append((f"videos/{slug(spec)}_ep{k}.mp4", replay))
    for name, replay in tqdm(chosen, desc="videos", unit="video", disable=not progress):
        frames = replay_frames(replay)
        write_video(out_dir / name, frames)
        if not written:
            write_png(out_dir / "videos" / "preview.png", frames[len(frames) // 2])
        written.append(name)
    return written


# ------------------------------------------------------------------------------------------- plots
def _save_figure(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        return _atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_success(report: dict, path: Path) -> Path:
    """Imagined against simulated success rate, one point per policy (named in the legend), with the diagonal.

    The names go to a legend beside the axes, not next to the points: a family's rates often sit within a
    few points of each other (every policy near 0 in imagination), where labels on the plot overlap. Each
    policy has its own colour and marker, so points on the same spot stay apart in the legend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.2, 5))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="imagined = simulated")
    markers = "osD^vP*Xh<>"
    for i, (spec, row) in enumerate(report["policies"].items()):
        if row.get("sim_success") is None:
            continue  # failed or not run: no point
        point = (row["sim_success"], row["imagined_success"])
        ax.scatter(*point, s=45, zorder=3, marker=markers[i % len(markers)], label=spec, alpha=0.85)
    c = report["correlation"]
    ax.set(
        xlim=(-0.05, 1.05),
        ylim=(-0.05, 1.05),
        xlabel="success rate in the simulator",
        ylabel="success rate in imagination",
        title=f"Pearson {_fmt(c['pearson'])}, Spearman {_fmt(c['spearman'])}, MMRV {_fmt(c['mmrv'])}",
    )
    ax.set_aspect("equal")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return _save_figure(fig, path)


def plot_fidelity(report: dict, path: Path) -> Path:
    """PSNR and robot/object ST-IoU against the open-loop horizon: model solid, first frame dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    h = np.asarray(report["fidelity"]["horizons"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    panels = ((left, (("psnr", "PSNR"),)), (right, (("robot_st_iou", "robot"), ("object_st_iou", "object"))))
    for ax, metrics in panels:
        for colour, (name, label) in zip(("tab:blue", "tab:red"), metrics, strict=False):
            for source, style, who in (("fidelity", "-", "model"), ("baseline", "--", "first frame")):
                values = np.asarray([np.nan if v is None else v for v in report[source].get(name, [])], float)
                if values.size:
                    ax.plot(h, values, style, color=colour, marker="o", markersize=3, label=f"{label}, {who}")
        ax.set_xlabel("open-loop horizon (steps)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel("PSNR (dB)")
    right.set(ylabel="ST-IoU over steps 1..h", ylim=(0, 1.02))
    return _save_figure(fig, path)


def write_outputs(
    out_dir: Path,
    report: dict,
    replays: list[Replay],
    videos_per_policy: int,
    progress: bool = False,
    started: float | None = None,
) -> dict:
    """Writes videos, plots, ``report.json`` and ``report.md`` into ``out_dir``; returns the report.

    A report without ``fidelity`` (interrupted, or no policy finished) gets no fidelity plot or sections.

    With ``started`` (a ``time.perf_counter()`` value), ``report["timing_seconds"]["total"]`` is set to the
    time since then, just before the report files are written (so it includes the videos and plots).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = write_videos(out_dir, replays, videos_per_policy, progress)
    has_fidelity = "fidelity" in report  # absent from a partial (interrupted) report
    report["files"] = {
        "report_json": "report.json",
        "report_md": "report.md",
        "success_scatter": "success_scatter.png",
        "fidelity_vs_horizon": "fidelity_vs_horizon.png" if has_fidelity else None,
        "videos": videos,
        "preview": "videos/preview.png" if videos else None,
        "disagreement_videos": report.get("disagreement", {}).get("videos", []),
    }
    plot_success(plain(report), out_dir / "success_scatter.png")
    if has_fidelity:
        plot_fidelity(plain(report), out_dir / "fidelity_vs_horizon.png")
    if started is not None:
        report.setdefault("timing_seconds", {})["total"] = round(time.perf_counter() - started, 2)
    data = plain(report)
    write_json(out_dir / "report.json", data)
    _atomic(out_dir / "report.md", lambda tmp: tmp.write_text(markdown(data, videos)))
    return report
