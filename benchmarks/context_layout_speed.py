"""World-model step time of the two context layouts (`WorldModelConfig.context_layout`), in one run.

``sequence`` (CogVideoX's) puts the context latent frames in the transformer's token sequence before the frame
to generate; ``channels`` (DIAMOND's) stacks them on the channels of the frame to generate, whose tokens are
then the only ones. This times, for each layout and the same model otherwise (the tiny preset with two
context frames, as in docs/results/interaction_experiments.md experiment 9), one training step (loss,
backward, AdamW) at batch ``--batch-size`` and one 4-step ``generate`` of ``--envs`` frames, and prints the
ratios. Speed does not depend on the weights: the codec is a freshly initialised one of the given factor.

    python benchmarks/context_layout_speed.py --image-size 128 --downsample 4 --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from vap_env.model.codec import FrameAutoencoder
from vap_env.model.cogvideox.model import ActionToVideoModel
from vap_env.model.config import CONTEXT_LAYOUTS, WorldModelConfig


def _model(layout: str, image_size: int, downsample: int) -> ActionToVideoModel:
    torch.manual_seed(0)
    codec = FrameAutoencoder(latent_channels=8, downsample=downsample, block_channels=(16, 32, 64))
    unshuffle = 4 if image_size >= 128 else 1
    config = WorldModelConfig.tiny(
        image_size=image_size,
        context_frames=2,
        controlnet_encoder_unshuffle=unshuffle,
        context_layout=layout,
    )
    return ActionToVideoModel(config, codec)


def time_layout(layout: str, args: argparse.Namespace, repeats: int) -> dict[str, float]:
    """Seconds of the fastest training step and 4-step ``generate`` call of ``repeats`` (after a warm-up)."""
    model = _model(layout, args.image_size, args.downsample)
    latent = args.image_size // args.downsample
    latents = torch.randn(args.batch_size, 3, 8, latent, latent)
    prompts = torch.rand(args.batch_size, 3, 3, args.image_size, args.image_size) * 2 - 1
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    generator = torch.Generator().manual_seed(0)
    steps = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        model.latent_training_loss(latents, prompts, generator).backward()
        optimizer.step()
        optimizer.zero_grad()
        steps.append(time.perf_counter() - start)
    model.eval()
    context = torch.rand(args.envs, 2, 3, args.image_size, args.image_size) * 2 - 1
    calls = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            model.generate(context, prompts[: args.envs], 4, generator=torch.Generator().manual_seed(0))
            calls.append(time.perf_counter() - start)
    tokens = model.transformer.config.sample_frames * (latent // model.config.patch_size) ** 2
    return {"tokens": tokens, "train_step_s": min(steps[1:]), "generate_s": min(calls[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--downsample", type=int, default=4, choices=(4, 8))
    parser.add_argument("--batch-size", type=int, default=16, help="training clips per step; default: 16")
    parser.add_argument("--envs", type=int, default=8, help="frames per generate call; default: 8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed repeats (the fastest counts); default: 3"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for _ in range(2):  # interleaved twice: a shared machine's load then hits both layouts alike
        for layout in CONTEXT_LAYOUTS:
            r = time_layout(layout, args, args.repeats)
            best = results.setdefault(layout, r)
            for key in ("train_step_s", "generate_s"):
                best[key] = min(best[key], r[key])
    print(f"{args.image_size}x{args.image_size}, {args.downsample}x codec, two context frames, "
          f"{args.threads} thread(s)")  # fmt: skip
    print("| layout | tokens | training step (s) | generate, 4 steps (s) |")
    print("|---|---|---|---|")
    for layout, r in results.items():
        print(f"| {layout} | {r['tokens']} | {r['train_step_s']:.3f} | {r['generate_s']:.3f} |")
    seq, ch = results["sequence"], results["channels"]
    print(f"channels / sequence speed: training {seq['train_step_s'] / ch['train_step_s']:.2f}x, "
          f"generate {seq['generate_s'] / ch['generate_s']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
