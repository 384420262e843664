"""``vap-env robots``: the robot descriptions shipped in ``vap_env/robots/``, one row each."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers ``robots`` on the ``vap-env`` subparsers; returns its parser (handler: :func:`run`)."""
    parser = subparsers.add_parser("robots", help="list the robot descriptions shipped in robots/")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Prints a table of the robot descriptions; returns the exit code."""
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
