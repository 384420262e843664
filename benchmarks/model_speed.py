"""Codec speed: encode and decode frames/s of the learned per-frame codec on this machine, and (given a
`vap-env train-codec` output) the training wall time to a held-out PSNR mark.

Run: ``python benchmarks/model_speed.py [--codec DIR] [--threads 1] [--mark 32]``. Without ``--codec`` it
times freshly initialised codecs of the default size at 4x and 8x (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from vap_env.model.codec import FrameAutoencoder, load_codec


def frames_per_second(fn, frames: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        fn(frames)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            fn(frames)
    return repeats * frames.shape[0] * frames.shape[1] / (time.perf_counter() - start)


def time_to_mark(run_dir: Path, mark: float) -> str:
    """Training seconds until the held-out PSNR first reached ``mark`` dB, from the run's metrics.csv."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return "n/a (no metrics.csv)"
    rows = [r for r in csv.DictReader(path.open()) if r.get("heldout_psnr")]
    for r in rows:
        if float(r["heldout_psnr"]) >= mark:
            return f"{float(r['elapsed_s']):.0f} s (step {r['step']}, {float(r['heldout_psnr']):.2f} dB)"
    best = max(rows, key=lambda r: float(r["heldout_psnr"])) if rows else None
    return "not reached" + (
        f" (best {float(best['heldout_psnr']):.2f} dB at step {best['step']}, "
        f"{float(best['elapsed_s']):.0f} s)"
        if best
        else ""
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", type=Path, action="append", help="trained codec dir(s); repeatable")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mark", type=float, default=32.0, help="held-out PSNR mark (dB); default 32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codecs = {}
    if args.codec:
        for d in args.codec:
            codecs[str(d)] = load_codec(d)
    else:
        codecs = {
            "untrained 4x": FrameAutoencoder(downsample=4),
            "untrained 8x": FrameAutoencoder(downsample=8),
        }
    s = args.image_size
    print(f"codec speed, {s}x{s} frames, {args.threads} torch thread(s), frames/s")
    print(f"{'codec':<28}{'enc B=1':>10}{'dec B=1':>10}{'enc B=64':>10}{'dec B=64':>10}")
    for name, codec in codecs.items():
        codec.eval()
        row = []
        for batch, repeats in ((1, 50), (64, 3)):
            frames = torch.rand(batch, 1, 3, s, s) * 2 - 1
            latents = codec.encode(frames)
            row += [
                frames_per_second(codec.encode, frames, repeats),
                frames_per_second(codec.decode, latents, repeats),
            ]
        print(f"{name[-28:]:<28}" + "".join(f"{v:>10.0f}" for v in row))
    for d in args.codec or []:
        print(f"{d}: time to {args.mark:g} dB held-out PSNR: {time_to_mark(d, args.mark)}")


if __name__ == "__main__":
    main()
