"""The ``vap-env`` command line: ``vap-env <command> --help`` explains each command.

One module per command, each with ``add_parser(subparsers)`` (its flags, mostly read from the command's
config dataclass by :mod:`vap_env.cli.arguments`) and ``run(args)`` (its handler, returning the exit code).
Building the parser imports no torch or PyBullet (``tests/test_cli.py`` checks): the handlers import what
they need.
"""

from __future__ import annotations

import argparse
import sys

from vap_env.cli import collect, evaluate, info, robots, rollout, train, train_codec

COMMANDS = (robots, collect, info, train, train_codec, evaluate, rollout)
"""The command modules, in the order ``vap-env --help`` lists them."""

EPILOG = """examples:
  vap-env robots
  vap-env collect --robot panda --task push --episodes 20 --policy scripted:noise=0.2 --out data/panda_push
  vap-env info data/panda_push
  vap-env train-codec --data data/panda_push --out runs/codec
  vap-env train --data data/panda_push --codec runs/codec --out runs/wm --steps 3000
  vap-env evaluate --model runs/wm --robot panda --task push --episodes 10 --horizon 8 --out reports/wm
  vap-env rollout --model runs/wm --policy scripted:noise=0.2 --out rollout.mp4
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``vap-env`` parser with every command; ``args.func(args)`` runs the parsed one."""
    parser = argparse.ArgumentParser(
        prog="vap-env",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="World-model environments for robot learning, driven by visual action prompts.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs ``vap-env`` on ``argv`` (default: ``sys.argv[1:]``); returns the exit code (2: a usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "episodes", 1) is not None and getattr(args, "episodes", 1) < 1:
        parser.error("--episodes must be at least 1")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"vap-env {args.command}: error: {e}", file=sys.stderr)
        return 2
