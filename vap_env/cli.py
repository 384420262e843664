"""The ``vap-env`` command line: ``vap-env <command> --help`` explains each command."""

from __future__ import annotations

import argparse
import json
import sys

# building the parser imports no torch or PyBullet (tests/test_cli.py checks): handlers import what they need
from vap_env.evaluate.commands import add_evaluate_parser, add_rollout_parser
from vap_env.train.codec_command import add_train_codec_parser
from vap_env.train.commands import add_train_parser

EPILOG = """examples:
  vap-env robots
  vap-env collect --robot panda --task push --episodes 20 --policy scripted:noise=0.2 --out data/panda_push
  vap-env info data/panda_push
  vap-env train-codec --data data/panda_push --out runs/codec
  vap-env train --data data/panda_push --codec runs/codec --out runs/wm --steps 3000
  vap-env evaluate --model runs/wm --robot panda --task push --episodes 10 --horizon 8 --out reports/wm
  vap-env rollout --model runs/wm --policy scripted:noise=0.2 --out rollout.mp4
"""


def _cmd_robots(args: argparse.Namespace) -> int:
    from vap_env.description import list_robots, load_description

    rows = []
    for name in list_robots():
        d = load_description(name)
        grip = len(d.gripper.joints) if d.gripper else 0
        rows.append(
            (
                name,
                d.display_name,
                d.kind,
                str(d.num_arm_joints) if d.kind == "arm" else "-",
                str(grip) if d.kind == "arm" else "-",
                str(len(d.keypoints)),
                d.model or "(tracked keypoints)",
            )
        )
    header = ("name", "robot", "kind", "arm joints", "gripper joints", "keypoints", "model")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from vap_env.recording import collect

    summary = collect(
        args.robot,
        args.task,
        args.episodes,
        args.policy,
        args.out,
        image_size=args.image_size,
        camera=args.camera,
        action_mode=args.action_mode,
        seed=args.seed,
        max_steps=args.max_steps,
        progress=not args.quiet,
    )
    rate = summary["recorded_now"] / max(summary["seconds"], 1e-9) * 60
    print(
        f"recorded {summary['recorded_now']} episodes in {summary['seconds']:.1f} s ({rate:.1f} episodes/min); "
        f"{args.out} now holds {summary['episodes']} episodes, {summary['frames']} frames, "
        f"success rate {summary['success_rate']:.0%}"
    )
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from vap_env.data import EpisodeDataset

    summary = EpisodeDataset(args.path).summary()
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    h, w = summary["image_size"]
    print(f"dataset        {summary['path']}")
    print(
        f"robot / task   {summary['robot']} / {summary['task']}  ({summary['action_mode']}, "
        f"camera {summary['camera']})"
    )
    print(f"episodes       {summary['episodes']}")
    print(f"frames         {summary['frames']}")
    print(f"success rate   {summary['success_rate']:.1%}")
    print(f"image size     {h}x{w}")
    print(f"policies       {', '.join(summary['policies'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vap-env",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="World-model environments for robot learning, driven by visual action prompts.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("robots", help="list the robot descriptions shipped in robots/")
    p.set_defaults(func=_cmd_robots)

    p = sub.add_parser(
        "collect",
        help="record episodes of a policy in the simulator",
        description="Record episodes of a policy acting in the PyBullet simulator: frames, commanded "
        "and achieved robot states, actions, camera, object poses, segmentation masks, "
        "success. Re-running with the same --out continues an interrupted recording.",
    )
    p.add_argument("--robot", default="panda", help="robot name (see `vap-env robots`); default: panda")
    p.add_argument("--task", default="push", help="task: push or reach; default: push")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes; default: 10")
    p.add_argument(
        "--policy",
        default="scripted:noise=0.2",
        help="policy spec: scripted[:noise=X,hesitation=Y] or random; default: scripted:noise=0.2",
    )
    p.add_argument("--image-size", type=int, default=64, help="square frame size in pixels; default: 64")
    p.add_argument(
        "--camera",
        default="fixed",
        choices=["fixed", "random"],
        help="fixed: the robot's default view; random: a new viewpoint per episode",
    )
    p.add_argument("--action-mode", default="ee_delta", choices=["ee_delta", "joint_delta"])
    p.add_argument("--seed", type=int, default=0, help="episode i is reset with seed SEED+i; default: 0")
    p.add_argument(
        "--max-steps", type=int, default=None, help="cap on steps per episode (default: the env's limit)"
    )
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser("info", help="summarise a recorded dataset")
    p.add_argument("path", help="dataset directory")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_info)

    add_train_parser(sub)
    add_train_codec_parser(sub)
    add_evaluate_parser(sub)
    add_rollout_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "episodes", 1) is not None and getattr(args, "episodes", 1) < 1:
        parser.error("--episodes must be at least 1")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"vap-env {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
