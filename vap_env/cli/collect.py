"""``vap-env collect``: record episodes of a policy in the PyBullet simulator.

Its flags are written here rather than read from a config dataclass: :func:`vap_env.recording.collect`
takes plain arguments, and its module imports PyBullet, which building the parser must not.
"""

from __future__ import annotations

import argparse

from vap_env.modes import ACTION_MODES, CAMERA_MODES
from vap_env.tasks import TASKS


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers ``collect`` on the ``vap-env`` subparsers; returns its parser (handler: :func:`run`)."""
    p = subparsers.add_parser(
        "collect",
        help="record episodes of a policy in the simulator",
        description="Record episodes of a policy acting in the PyBullet simulator: frames, commanded "
        "and achieved robot states, actions, camera, object poses, segmentation masks, "
        "success. Re-running with the same --out continues an interrupted recording.",
    )
    p.add_argument("--robot", default="panda", help="robot name (see `vap-env robots`); default: panda")
    p.add_argument("--task", default="push", help=f"task: {' or '.join(TASKS)}; default: push")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes; default: 10")
    p.add_argument(
        "--policy",
        default="scripted:noise=0.2",
        help="policy spec: scripted[:noise=X,hesitation=Y], random, sb3:PATH.zip[,algo=PPO,deterministic=false] "
        "(trusted checkpoints only) or py:MODULE_OR_FILE.py:NAME[,KEY=VALUE]; default: scripted:noise=0.2",
    )
    p.add_argument("--image-size", type=int, default=64, help="square frame size in pixels; default: 64")
    p.add_argument(
        "--camera",
        default="fixed",
        choices=CAMERA_MODES,
        help="fixed: the robot's default view; random: a new viewpoint per episode",
    )
    p.add_argument("--action-mode", default="ee_delta", choices=ACTION_MODES)
    p.add_argument("--seed", type=int, default=0, help="episode i is reset with seed SEED+i; default: 0")
    p.add_argument(
        "--max-steps", type=int, default=None, help="cap on steps per episode (default: the env's limit)"
    )
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Records the episodes (continuing what ``--out`` holds), prints a summary; returns the exit code."""
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
