"""What visual action prompts buy: conditioning variants of one world model compared open loop on held-out
episodes.

Every variant starts from the same ``pretrain`` base (the transformer taught video continuation without
actions) and trains the same number of ``control`` steps on the same data; only the conditioning differs:

==================  =====================================================================================
``none``            no action signal: the base adapted by LoRA alone (the text/no-action baseline)
``state``           the raw commanded joint state, embedded into the timestep embedding, plus LoRA
``skeleton``        the 2D skeleton prompt through the ControlNet, plus LoRA (the paper's recipe)
``depth_skeleton``  skeleton coloured by depth, ControlNet + LoRA
``mask``            the robot's rendered silhouette, ControlNet + LoRA
``controlnet_only`` skeleton, ControlNet without LoRA (``lora_rank=0``)
``lora_only``       skeleton tokens from the trajectory encoder added to the base's input, no copied
                    blocks (``controlnet_layers=0``); the base adapts through LoRA only
==================  =====================================================================================

Each variant replays the held-out episodes' actions open loop from their first frame (never seeing another
simulator frame) and is scored against the simulator at each horizon by PSNR, SSIM and the ST-IoU of
robot masks (a segmenter fitted on simulator frames of other seeds) and of the cube's mask (the red-cube
detector); the trivial baseline repeats the first (= last observed) frame.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vap_env.evaluate.report import _fmt, _save_figure, write_json
from vap_env.tasks import task_spec

VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"prompt": "none"},
    "state": {"prompt": "state"},
    "skeleton": {"prompt": "skeleton"},
    "depth_skeleton": {"prompt": "depth_skeleton"},
    "mask": {"prompt": "mask"},
    "controlnet_only": {"prompt": "skeleton", "lora_rank": 0},
    "lora_only": {"prompt": "skeleton", "controlnet_layers": 0},
}
"""Variant name -> the ``vap-env train`` options (``--prompt``, ``--lora-rank``, ``--controlnet-layers``)."""

METRICS = ("psnr", "ssim", "robot_st_iou", "object_st_iou")
REPORT_HORIZONS = (1, 8, 16)
BASELINE = "repeat_last_frame"


def train_arguments(variant: str) -> list[str]:
    """The ``vap-env train`` flags that select ``variant`` (on top of ``--stage control --init BASE``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    flags = {"prompt": "--prompt", "lora_rank": "--lora-rank", "controlnet_layers": "--controlnet-layers"}
    out: list[str] = []
    for key, value in VARIANTS[variant].items():
        out += [flags[key], str(value)]
    return out


def fidelity_table(aggregated: dict[str, dict], horizons: Sequence[int] = REPORT_HORIZONS) -> dict[str, dict]:
    """``{"model"|"baseline"|"segmenter": {metric: {h: value}}}`` picked from
    :func:`~vap_env.evaluate.replay.aggregate_fidelity` output at ``horizons`` (``None`` where not reached)."""
    out: dict[str, dict] = {}
    for world, table in aggregated.items():
        out[world] = {}
        for name in (*METRICS, *(f"{m}_sem" for m in METRICS)):
            if name not in table:
                continue
            values = table[name]
            out[world][name] = {
                str(h): (
                    None if h > len(values) or not math.isfinite(values[h - 1]) else float(values[h - 1])
                )
                for h in horizons
            }
        if "count" in table:
            out[world]["count"] = {str(h): int(table["count"][h - 1]) if h <= len(table["count"]) else 0
                                   for h in horizons}  # fmt: skip
    return out


def evaluate_variant(
    model: Any,
    episodes: list,
    segmenter: Any,
    horizon: int = max(REPORT_HORIZONS),
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """Open-loop replays of ``episodes`` (recorded in the simulator, their seeds reproduce the initial state
    and camera) by ``model``, scored per horizon ``1..horizon``.

    Returns:
        ``{"curves": aggregate_fidelity output, "start_matches": fraction of replays that started from
        exactly the recorded first frame, "command_error": largest commanded-joint gap (rad)}``.
    """
    from vap_env.envs.imagined_world import ImaginedWorld
    from vap_env.evaluate.replay import aggregate_fidelity, fidelity_curves, open_loop_replays

    first = episodes[0]
    world = ImaginedWorld(model, robot=first.robot, task=first.task, camera=camera_mode(episodes),
                          obs_mode="image", reset_mode="sim", action_mode=first.action_mode)  # fmt: skip
    try:
        replays = open_loop_replays(world, episodes, horizon, batch_size, progress)
    finally:
        world.close()
    curves = [fidelity_curves(r, segmenter, has_object=task_spec(first.task).has_object) for r in replays]
    return {
        "curves": aggregate_fidelity(curves, horizon),
        "start_matches": float(np.mean([r.start_matches for r in replays])),
        "command_error": float(max(r.command_error for r in replays)),
    }


def camera_mode(episodes: list) -> str:
    """``fixed`` when every episode saw the scene from one camera, else ``random`` (a viewpoint per seed)."""
    cameras = {json.dumps(_camera_key(e.camera)) for e in episodes}
    return "fixed" if len(cameras) == 1 and len(episodes) > 1 else "random"


def _camera_key(camera: Any) -> list[float]:
    return [round(float(v), 6) for v in (*camera.extrinsics.ravel(), *camera.intrinsics.ravel())]


def markdown_table(results: dict[str, Any], horizons: Sequence[int] = REPORT_HORIZONS) -> str:
    """The comparison as a markdown table: one row per variant (and the baseline), metric@horizon columns."""
    names = [*results["variants"], BASELINE]
    header = ["conditioning"] + [f"{label} h{h}" for label in ("PSNR", "SSIM", "robot ST-IoU", "object ST-IoU")
                                 for h in horizons]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        row = results["variants"][name]["model"] if name != BASELINE else results["baseline"]
        cells = [f"`{name}`"]
        for metric in METRICS:
            digits = 2 if metric == "psnr" else 3
            cells += [_fmt(row.get(metric, {}).get(str(h)), digits) for h in horizons]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_comparison(results: dict[str, Any], path: Path) -> Path:
    """Four panels (PSNR, SSIM, robot and object ST-IoU) against the open-loop horizon, one line per
    variant, the repeat-last-frame baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    curves = results["curves"]
    styles = {name: "-" for name in results["variants"]}
    for ax, metric, label in zip(axes, METRICS, ("PSNR (dB)", "SSIM", "robot ST-IoU", "object ST-IoU"),
                                 strict=True):  # fmt: skip
        for name, style in (*styles.items(), (BASELINE, "--")):
            values = np.asarray(
                [np.nan if v is None else v for v in curves.get(name, {}).get(metric, [])], float
            )
            if values.size:
                h = np.arange(1, values.size + 1)
                width = 2.4 if name == "skeleton" else 1.3
                colour = "black" if name == BASELINE else None
                ax.plot(h, values, style, linewidth=width, color=colour, label=name)
        ax.set(xlabel="open-loop horizon (steps)", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(results.get("title", "conditioning variants, held-out open-loop replays"))
    return _save_figure(fig, path)


def write_results(results: dict[str, Any], json_path: Path, plot_path: Path | None = None) -> None:
    """Writes the JSON (atomically) and, if asked, the plot."""
    write_json(json_path, results)
    if plot_path is not None:
        plot_comparison(results, plot_path)


__all__ = [
    "BASELINE",
    "METRICS",
    "REPORT_HORIZONS",
    "VARIANTS",
    "camera_mode",
    "evaluate_variant",
    "fidelity_table",
    "markdown_table",
    "plot_comparison",
    "train_arguments",
    "write_results",
]
