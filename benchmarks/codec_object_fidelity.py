"""How well a codec reconstructs the cube: PSNR over the cube's pixels (and the robot's, and whole frames).

A world model in a codec's latent space can at best show the codec's reconstruction, so a cube the codec
blurs away cannot be pushed in imagination. For each (codec, held-out dataset) pair this encodes and decodes
every frame and scores the reconstruction on the simulator's object mask (dilated by one pixel, so the
cube's edges count), on the robot mask, and on the whole frame.

    python benchmarks/codec_object_fidelity.py --pair vap_env/default_model/model/codec data/panda_push_heldout \\
        --pair runs/codec8_128 data/framed128_push_heldout
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from vap_env.data import EpisodeDataset
from vap_env.evaluate.image_metrics import masked_psnr, psnr
from vap_env.evaluate.segmenter import codec_reconstructions
from vap_env.model.codec import load_codec


def score(codec_dir: Path, data_dir: Path) -> dict[str, float]:
    """Object-, robot- and frame-PSNR of ``codec_dir``'s reconstructions of every frame in ``data_dir``."""
    torch.set_num_threads(1)
    codec = load_codec(codec_dir).eval()
    episodes = list(EpisodeDataset(data_dir))
    frames = np.concatenate([e.frames for e in episodes])
    objects = np.concatenate([e.object_mask for e in episodes])
    robots = np.concatenate([e.robot_mask for e in episodes])
    kernel = np.ones((3, 3), np.uint8)
    objects = np.stack([cv2.dilate(m.astype(np.uint8), kernel).astype(bool) for m in objects])
    with torch.no_grad():
        recon = codec_reconstructions(codec, frames)
    return {
        "frames": len(frames),
        "image_size": int(frames.shape[1]),
        "psnr": float(np.mean(psnr(recon, frames))),  # per frame, averaged: as the codec trainer reports it
        "object_psnr": float(masked_psnr(recon, frames, objects)),
        "robot_psnr": float(masked_psnr(recon, frames, robots)),
        "latent_grid": int(frames.shape[1] // codec.spatial_factor),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pair", nargs=2, action="append", required=True, metavar=("CODEC", "DATA"), type=Path
    )
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    rows = [{"codec": str(c), "data": str(d), **score(c, d)} for c, d in args.pair]
    print(
        "| codec | data | size | latent grid | frame PSNR | cube PSNR | robot PSNR |\n|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(f"| {r['codec']} | {r['data']} | {r['image_size']} | {r['latent_grid']} | {r['psnr']:.2f} | "
              f"{r['object_psnr']:.2f} | {r['robot_psnr']:.2f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
