"""``vap-env rollout``: roll a policy out in imagination and save the video (imagined frame | prompt).

It shares the world flags (``--model``, ``--robot``, ``--task``, ``--seed``, ``--camera``, ``--device``,
``--inference-steps``) with ``vap-env evaluate``, read from the same
:class:`~vap_env.evaluate.config.EvaluateConfig` fields.
"""

from __future__ import annotations

import argparse
import sys

from vap_env.cli.arguments import config_values
from vap_env.cli.evaluate import WORLD_FLAGS, add_world_flags

DESCRIPTION = """\
Roll a policy out in imagination and save the video: the world-model env starts from the simulator's first
frame for SEED, the policy acts on the generated frames, and each video frame shows the imagined frame beside
the visual action prompt it was generated from. Stops at an (estimated) success or after STEPS steps."""

EPILOG = """\
example:
  vap-env rollout --model runs/wm --policy scripted:noise=0.2 --out rollout.mp4 --steps 40
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers ``rollout`` on the ``vap-env`` subparsers; returns its parser (handler: :func:`run`)."""
    p = subparsers.add_parser(
        "rollout",
        help="roll a policy out in imagination and save the video",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    add_world_flags(p)
    p.add_argument(
        "--policy",
        default="scripted:noise=0",
        metavar="SPEC",
        help="policy spec: scripted[:noise=X,hesitation=Y,seed=Z], random, sb3:PATH.zip[,algo=PPO,deterministic=false] "
        "(trusted checkpoints only) or py:MODULE_OR_FILE.py:NAME[,KEY=VALUE]; default: scripted:noise=0",
    )
    p.add_argument("--out", required=True, metavar="FILE.mp4", help="the video to write")
    p.add_argument(
        "--steps", type=int, default=None, metavar="N", help="most steps; default: the task's limit"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``vap-env rollout``: rolls the policy out, writes the video; returns the exit code."""
    from vap_env.evaluate.rollout import rollout

    try:
        result = rollout(
            args.model,
            args.policy,
            args.out,
            steps=args.steps,
            device=args.device,
            progress=not args.quiet,
            **config_values(args, WORLD_FLAGS),
        )
    except (ValueError, OSError) as error:
        print(f"vap-env rollout: error: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {result['video']}: {result['frames']} frames, {result['steps']} steps, "
        f"{'success' if result['success'] else 'no success'}, return {result['return']:.3f}"
    )
    return 0
