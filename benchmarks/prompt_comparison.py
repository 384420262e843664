"""What visual action prompts buy, on held-out episodes: conditioning variants trained from one pretrained
base with the same data and steps, compared open loop at horizons 1, 8 and 16 (see
``vap_env.evaluate.comparison`` for the variants).

Stages (each skipped when its output exists, so an interrupted run continues where it stopped):

1. ``OUT/pretrain``: the base, ``vap-env train --stage pretrain --prompt none`` (video continuation, no
   actions), unless ``--pretrain DIR`` names one.
2. ``OUT/<variant>``: ``vap-env train --stage control --init BASE`` with the variant's flags, same steps.
3. ``OUT/segmenter``: a robot segmenter fitted on fresh simulator episodes (other seeds, same cameras) and
   on the codec's reconstructions of them.
4. Each variant replays the held-out episodes open loop; the JSON and the plot are written.

Run (the figures in the README; about 90 minutes on a 2-core CPU)::

    python benchmarks/prompt_comparison.py --data data/panda_push_train --val-data data/panda_push_heldout \\
        --codec runs/codec4 --out runs/compare --pretrain-steps 4000 --steps 2000 \\
        --json docs/results/prompt_comparison.json --plot docs/images/prompt_comparison.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from vap_env.evaluate.comparison import (
    BASELINE,
    REPORT_HORIZONS,
    VARIANTS,
    camera_mode,
    evaluate_variant,
    fidelity_table,
    markdown_table,
    train_arguments,
    write_results,
)


def train(args: argparse.Namespace, out: Path, extra: list[str], steps: int) -> None:
    """Runs ``vap-env train`` (resuming if ``out`` holds checkpoints), unless ``out`` is trained already."""
    if (out / "model" / "config.json").is_file() and _last_row(out).get("step", 0) >= steps:
        print(f"[skip] {out} is trained ({steps} steps)")
        return
    command = [sys.executable, "-m", "vap_env.cli", "train", "--data", args.data, "--val-data", args.val_data,
               "--out", str(out), "--steps", str(steps), "--eval-every", str(steps // 2),
               "--checkpoint-every", str(max(steps // 4, 1)), "--seed", str(args.seed), *extra]  # fmt: skip
    if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
        command.append("--resume")
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def _last_row(out: Path) -> dict[str, float]:
    """The last row of a training run's ``metrics.csv`` (``{}`` if it has none)."""
    from vap_env.train.metrics import read_metrics

    rows = read_metrics(out) if (out / "metrics.csv").is_file() else []
    return rows[-1] if rows else {}


def _train_seconds(out: Path) -> float | None:
    """Wall time of a training run (its last ``elapsed_s``; the CPU may have been shared)."""
    seconds = _last_row(out).get("elapsed_s")
    return round(seconds, 1) if seconds is not None else None


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--data", required=True, help="training episodes (`vap-env collect`)")
    p.add_argument("--val-data", required=True, help="held-out episodes (other seeds and cameras)")
    p.add_argument("--codec", help="a trained codec for the pretrain stage (`vap-env train-codec`)")
    p.add_argument("--out", required=True, type=Path, help="where the runs go")
    p.add_argument("--pretrain", type=Path, help="an existing pretrain run (default: train OUT/pretrain)")
    p.add_argument("--pretrain-steps", type=int, default=4000)
    p.add_argument("--steps", type=int, default=2000, help="control-stage steps of every variant")
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS)
    )
    p.add_argument("--horizon", type=int, default=max(REPORT_HORIZONS))
    p.add_argument("--episodes", type=int, default=None, help="held-out episodes replayed (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--train-only",
        action="store_true",
        help="train the variants and stop (e.g. two processes on disjoint --variants, then one "
        "without this flag to evaluate them all)",
    )
    p.add_argument("--json", type=Path, default=Path("docs/results/prompt_comparison.json"))
    p.add_argument("--plot", type=Path, default=Path("docs/images/prompt_comparison.png"))
    args = p.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")

    import torch

    from vap_env.data import EpisodeDataset
    from vap_env.evaluate.segmenter import RobotSegmenter, SegmenterConfig, fit_for_evaluation
    from vap_env.model.loading import load_world_model

    # 1-2. Training.
    base = args.pretrain or args.out / "pretrain"
    if args.pretrain is None:
        if not args.codec:
            p.error("--codec is needed to train the pretrain stage (or pass --pretrain)")
        train(args, base, ["--stage", "pretrain", "--prompt", "none", "--config", "tiny",
                                                 "--codec", args.codec], args.pretrain_steps)  # fmt: skip
    for variant in variants:
        train(
            args, args.out / variant, ["--stage", "control", "--init", str(base), *train_arguments(variant)],
            args.steps,
        )  # fmt: skip

    if args.train_only:
        return

    # 3. The segmenter, fitted once for all variants.
    heldout = EpisodeDataset(args.val_data)
    episodes = [heldout[i] for i in range(len(heldout) if args.episodes is None else args.episodes)]
    first = episodes[0]
    image_size = int(first.image_size[0])
    base_model = load_world_model(base)
    seg_dir = args.out / "segmenter"
    camera = camera_mode(episodes)
    if (seg_dir / "segmenter.json").is_file():
        segmenter = RobotSegmenter.load(seg_dir)
    else:
        # twice the default fit: random viewpoints vary more than one fixed camera (held-out IoU 0.958)
        fit = SegmenterConfig(episodes=48, heldout_episodes=8, steps=3000)
        segmenter = fit_for_evaluation(first.robot, first.task, image_size, camera, fit, progress=True,
                                       codec=base_model.codec)  # fmt: skip
        segmenter.save(seg_dir)

    # 4. Open-loop replays.
    torch.manual_seed(args.seed)
    results: dict = {"variants": {}, "curves": {}}
    baseline = None
    for variant in sorted(variants, key=list(VARIANTS).index):
        start = time.perf_counter()
        model = load_world_model(args.out / variant)
        scored = evaluate_variant(model, episodes, segmenter, args.horizon, progress=True)
        table = fidelity_table(scored["curves"])
        results["variants"][variant] = {
            "model": table["model"],
            "train": json.loads((args.out / variant / "train_config.json").read_text())["model"],
            "start_matches": scored["start_matches"],
            "replay_seconds": round(time.perf_counter() - start, 1),
        }
        results["curves"][variant] = {
            k: v for k, v in scored["curves"]["model"].items() if not k.endswith("_sem")
        }
        baseline = baseline or (table["baseline"], table.get("segmenter"), scored["curves"]["baseline"])
    results["baseline"], results["segmenter_ceiling"], curves = baseline
    results["curves"][BASELINE] = {k: v for k, v in curves.items() if not k.endswith("_sem")}
    results["config"] = {
        "data": args.data, "val_data": args.val_data, "codec": args.codec or "the pretrain model's",
        "pretrain": str(base),
        "pretrain_steps": int(_last_row(base).get("step", 0)), "control_steps": args.steps, "horizon": args.horizon,
        "heldout_episodes": len(episodes), "camera": camera, "seed": args.seed,
        "train_seconds": {v: _train_seconds(args.out / v) for v in variants} | {"pretrain": _train_seconds(base)},
        "segmenter": {k: segmenter.info.get(k) for k in ("heldout_iou", "heldout_iou_codec", "camera")},
        "command": " ".join(sys.argv),
    }  # fmt: skip
    results["title"] = (
        f"held-out open-loop replays ({len(episodes)} episodes), {args.steps} control steps per variant"
    )
    write_results(results, args.json, args.plot)
    print(markdown_table(results))
    print(f"wrote {args.json} and {args.plot}")


if __name__ == "__main__":
    main()
