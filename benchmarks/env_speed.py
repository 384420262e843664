"""Imagined env steps per second of the batched world-model env, next to the simulator's, as a ratio.

Run: ``python benchmarks/env_speed.py [--model DIR] [--num-envs 1 8 32] [--device cuda] [--threads 1]``.
Without ``--model`` the model is the CPU preset the trainer builds (``WorldModelConfig.tiny``: a 4x
:class:`~vap_env.model.codec.FrameAutoencoder` codec, 4 transformer blocks on 16x16 latents at patch 2,
ControlNet of 2 blocks, LoRA, 4 denoising steps), untrained: speed does not depend on the weights. Random
actions, ``push``, 64x64 image observations, ``reset_mode="sim"``, episodes autoreset at the time limit. One
row per ``num_envs``: env steps per second over all sub-envs (N x batched steps / s), time per batched step,
and the ratio to one :class:`~vap_env.sim.env.SimEnv` (64x64 image observations) measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

# Run as a script from benchmarks/, so the sibling benchmark is importable: one timing loop for SimEnv.
from sim_speed import steps_per_second

import vap_env  # noqa: F401  (registers the envs)
from vap_env.envs.vector_env import WorldModelVectorEnv
from vap_env.model import ActionToVideoModel, WorldModelConfig
from vap_env.model.codec import FrameAutoencoder
from vap_env.model.loading import load_world_model
from vap_env.sim.registration import env_id
from vap_env.tasks import TASKS, task_spec


def tiny_model(robot: str, device: str) -> ActionToVideoModel:
    """The CPU preset with a latent codec, as ``vap-env train --config tiny --codec DIR`` builds it."""
    torch.manual_seed(0)
    config = WorldModelConfig.tiny(robot=robot, image_size=64, patch_size=2)
    return ActionToVideoModel(config, codec=FrameAutoencoder()).to(device).eval()


def imagined_steps_per_second(
    model: ActionToVideoModel, task: str, num_envs: int, steps: int, num_inference_steps: int | None
) -> tuple[float, float]:
    """(env steps/s over all sub-envs, seconds per batched step)."""
    venv = WorldModelVectorEnv(
        model,
        num_envs=num_envs,
        max_episode_steps=task_spec(task).max_episode_steps,
        task=task,
        num_inference_steps=num_inference_steps,
    )
    venv.action_space.seed(0)
    venv.reset(seed=0)
    for _ in range(2):  # warm-up: allocator, kernels, the first autoresets' simulator
        venv.step(venv.action_space.sample())
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        venv.step(venv.action_space.sample())
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    venv.close()
    return num_envs * steps / elapsed, elapsed / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="a saved world model; default: the untrained CPU preset"
    )
    parser.add_argument("--robot", default="panda")
    parser.add_argument("--task", default="push", choices=list(TASKS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--num-envs",
        type=int,
        nargs="+",
        default=None,
        help="default: 1 8 32 on the CPU, 1 8 32 128 256 on a GPU",
    )
    parser.add_argument("--steps", type=int, default=10, help="batched steps timed per row")
    parser.add_argument("--sim-steps", type=int, default=100)
    parser.add_argument("--num-inference-steps", type=int, default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; 0 keeps torch's default (on a shared 2-core machine 2 threads ran 10-30x "
        "slower than 1: the threads wait on each other)",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model = load_world_model(args.model, args.device) if args.model else tiny_model(args.robot, args.device)
    sizes = args.num_envs or ([1, 8, 32, 128, 256] if args.device.startswith("cuda") else [1, 8, 32])
    sim = steps_per_second(
        env_id(args.robot, args.task), {"obs_mode": "image", "image_size": 64}, args.sim_steps
    )
    c = model.config
    steps = args.num_inference_steps or model.spec.num_inference_steps
    print(
        f"world model: {args.model or 'tiny preset (untrained)'}, {type(model.codec).__name__}, "
        f"{c.num_layers} blocks, patch {c.patch_size}, {steps} denoising steps, {args.device}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"SimEnv {env_id(args.robot, args.task)}, 64x64 images: {sim:.1f} steps/s")
    print(f"{'num_envs':>8}{'env steps/s':>14}{'ms/batch step':>16}{'vs SimEnv':>12}")
    for n in sizes:
        rate, per_step = imagined_steps_per_second(model, args.task, n, args.steps, args.num_inference_steps)
        print(f"{n:>8}{rate:>14.1f}{per_step * 1000:>16.1f}{rate / sim:>12.2f}")
    print(f"torch {torch.__version__}, numpy {np.__version__}, gymnasium {gym.__version__}")


if __name__ == "__main__":
    main()
