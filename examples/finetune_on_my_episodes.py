"""Fine-tune the shipped default world model on your own episodes, and measure it before and after.

Records episodes in the simulator (or takes a directory you recorded with ``vap-env collect``), holds out the
last 10% of them, continues the default model's control stage (ControlNet + LoRA, base and codec frozen) on
the rest, and replays the held-out episodes open loop from their first frame with the model before and
after: PSNR and robot/object mask ST-IoU per horizon, beside repeating the first frame.

    python examples/finetune_on_my_episodes.py --record 40 --steps 500 --out runs/finetuned
    python examples/finetune_on_my_episodes.py --data data/my_push --steps 2000 --out runs/finetuned

Defaults take about 10 minutes on a 2-core CPU. Episodes must show the default's robot (the Panda) at its
image size (128x128); the command line is ``vap-env train --init default --stage control`` underneath, so a
run can be resumed with ``vap-env train ... --resume`` or continued from ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HORIZONS = (1, 4, 8)


def record(out: Path, episodes: int, policy: str, seed: int) -> Path:
    """``episodes`` random-camera Panda push episodes of ``policy`` from reset seed ``seed`` at the default
    model's image size (continued if ``out`` already holds some)."""
    from vap_env.model.cogvideox.loaders import load_config
    from vap_env.model.loading import default_model_path
    from vap_env.recording import collect

    size = load_config(default_model_path()).image_size[0]
    collect("panda", "push", episodes, policy, out, image_size=size, camera="random", seed=seed)
    return out


def fidelity(model, episodes: list, horizon: int) -> dict:
    """Open-loop fidelity of ``model`` on ``episodes``: ``{"model": {...}, "baseline": {...}}`` tables."""
    from vap_env.evaluate.comparison import evaluate_variant, fidelity_table
    from vap_env.evaluate.segmenter import RobotSegmenter
    from vap_env.model.loading import default_segmenter_path

    segmenter = RobotSegmenter.load(default_segmenter_path())
    scored = evaluate_variant(model, episodes, segmenter, horizon)
    return fidelity_table(scored["curves"], [h for h in HORIZONS if h <= horizon])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", type=Path, help="your recorded episodes (`vap-env collect`), Panda at 128x128"
    )
    source.add_argument(
        "--record", type=int, metavar="N", help="record N push episodes first (into OUT/data)"
    )
    parser.add_argument("--policy", default="scripted:noise=0.3,hesitation=0.1", help="policy that records")
    parser.add_argument("--seed", type=int, default=500_000, help="reset seed of the first recorded episode")
    parser.add_argument("--steps", type=int, default=500, help="control-stage steps; default: 500")
    parser.add_argument("--batch-size", type=int, default=16, help="clips per step; default: 16")
    parser.add_argument("--horizon", type=int, default=8, help="open-loop steps scored; default: 8")
    parser.add_argument("--out", type=Path, required=True, help="run directory (model/, checkpoints/, ...)")
    args = parser.parse_args(argv)

    import torch

    from vap_env.model.cogvideox.loaders import load_config
    from vap_env.model.loading import default_model_path, load_world_model
    from vap_env.train.config import WorldModelTrainConfig
    from vap_env.train.splits import split_episodes
    from vap_env.train.world_model_trainer import train_world_model

    data = args.data or record(args.out / "data", args.record, args.policy, args.seed)
    default = default_model_path()
    try:
        train, heldout, _ = split_episodes(data)  # the last 10% (at least one) held out: the trainer's rule
    except ValueError as error:
        print(f"finetune: {error}", file=sys.stderr)
        return 2
    print(f"{len(train)} training and {len(heldout)} held-out episodes from {data}")

    torch.manual_seed(0)
    before = fidelity(load_world_model("default"), heldout, args.horizon)
    config = WorldModelTrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=1e-4,
        warmup=min(50, args.steps),
        eval_every=args.steps,
    )
    model_config = load_config(default)
    model_config.stage = "control"
    result = train_world_model(data, args.out, model_config, config, init_from=default, resume=True)
    torch.manual_seed(0)
    after = fidelity(load_world_model(result["model_dir"]), heldout, args.horizon)

    rows = [
        ("default", before["model"]),
        ("fine-tuned", after["model"]),
        ("repeat first frame", before["baseline"]),
    ]
    metrics = [m for m in ("psnr", "robot_st_iou", "object_st_iou") if m in before["model"]]
    horizons = [h for h in HORIZONS if h <= args.horizon]
    header = ["model"] + [f"{m} h{h}" for m in metrics for h in horizons]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name, table in rows:
        cells = [_cell(table[m].get(str(h), table[m].get(h))) for m in metrics for h in horizons]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"fine-tuned model: {result['model_dir']} ({result['step']} steps, {result['seconds']:.0f} s)")
    return 0


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}" if value < 1.5 else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
