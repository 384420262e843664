"""``vap-env train-codec``: train the per-frame latent codec on recorded episodes.

Held-out frames come from whole held-out episodes (``--val-data``, or the last ``--val-fraction`` of the
episodes of ``--data``), never from frames of training episodes. The training flags come from the torch-free
:class:`~vap_env.train.config.CodecTrainConfig`; torch and the trainer are imported inside :func:`run`, so
``vap-env --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys

from vap_env.cli.arguments import Flag, add_config_flags, add_dataset_flags, config_values
from vap_env.train.config import CodecTrainConfig

EPILOG = """\
examples:
  vap-env train-codec --data data/panda_push --out runs/codec --image-size 64 --steps 3000
  vap-env train-codec --data data/panda_push --val-data data/panda_push_heldout --out runs/codec8 --downsample 8
  vap-env train-codec --data data/panda_push --out runs/codec --steps 6000 --resume
"""

TRAIN_FLAGS = (
    "image_size",
    "steps",
    "batch_size",
    "lr",
    Flag("downsample", choices=(4, 8)),
    "latent_channels",
    Flag("block_channels", metavar="C,C,..."),
    "object_weight",
    "eval_every",
    "checkpoint_every",
    "seed",
)
"""The :class:`CodecTrainConfig` fields ``vap-env train-codec`` exposes."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers ``train-codec`` on the ``vap-env`` subparsers; returns its parser (handler: :func:`run`)."""
    p = subparsers.add_parser(
        "train-codec",
        help="train the latent codec (autoencoder) small world models work in",
        description="Train a per-frame convolutional autoencoder on recorded frames: the codec small world "
        "models use where the full-size model uses the CogVideoX VAE. Writes the codec (config.json + "
        "safetensors, loadable with vap_env.model.codec.load_codec), metrics.csv with held-out PSNR/SSIM, "
        "and checkpoints/ for --resume.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_flags(p)
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="fraction of each --data directory's episodes held out when --val-data is not given; default: 0.1",
    )
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    add_config_flags(p.add_argument_group("training (CodecTrainConfig)"), CodecTrainConfig, TRAIN_FLAGS)
    p.set_defaults(func=run)
    return p


def _frames(data: list[str], val_data: list[str] | None, val_fraction: float):
    """``((train_frames, train_object_masks, n_train), (heldout_frames, heldout_object_masks, n_heldout))``,
    pooled over the directories and split as every trainer splits
    (:func:`vap_env.train.splits.split_episodes`)."""
    import numpy as np

    from vap_env.train.splits import split_episodes

    train, heldout, _ = split_episodes(data, val_data, val_fraction=val_fraction)
    return [
        (np.concatenate([e.frames for e in part]), np.concatenate([e.object_mask for e in part]), len(part))
        for part in (train, heldout)
    ]


def run(args: argparse.Namespace) -> int:
    """Handler of ``vap-env train-codec``: trains, prints the result as JSON; returns the exit code."""
    from vap_env.train.codec_trainer import train_codec

    config = CodecTrainConfig(**config_values(args, TRAIN_FLAGS))
    (train, train_objects, n_train), (heldout, heldout_objects, n_val) = _frames(
        args.data, args.val_data, args.val_fraction
    )
    print(
        f"training frames: {len(train)} from {n_train} episodes; held-out frames: {len(heldout)} from {n_val} "
        "episodes",
        file=sys.stderr,
    )
    result = train_codec(
        train,
        heldout,
        args.out,
        config,
        resume=args.resume,
        train_object_masks=train_objects,
        heldout_object_masks=heldout_objects,
    )
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}, indent=1))
    return 0
