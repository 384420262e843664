"""``vap-env info``: the summary of a recorded dataset (episodes, frames, success rate, policies)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers ``info`` on the ``vap-env`` subparsers; returns its parser (handler: :func:`run`)."""
    parser = subparsers.add_parser("info", help="summarise a recorded dataset")
    parser.add_argument("path", help="dataset directory")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Prints the dataset's summary, as a table or JSON; returns the exit code."""
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
    px = summary["object_px"]
    if px is not None:  # a small world model sees contact only if the object covers a few latent cells
        print(f"object size    {px['median']:.1f} px a side (10-90%: {px['p10']:.1f}-{px['p90']:.1f})")
    return 0
