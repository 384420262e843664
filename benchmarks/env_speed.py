"""Imagined env steps per second of the batched world-model env, next to the simulator's, as a ratio, with
where the time of one batched step goes.

Run: ``python benchmarks/env_speed.py [--model default|tiny|DIR] [--num-envs 1 8 32] [--device cuda]
[--threads 1] [--num-inference-steps 4 2 1]``. The model is the shipped default (``--model default``: the
64x64 Panda push and reach model of ``vap_env/default_model``, what ``gym.make(...-WM-v0)`` runs);
``--model tiny`` is the CPU preset the
trainer builds (``WorldModelConfig.tiny``: a 4x :class:`~vap_env.model.codec.FrameAutoencoder` codec, 4
transformer blocks on 16x16 latents at patch 2, ControlNet of 2 blocks, LoRA, 4 denoising steps), untrained:
speed does not depend on the weights. Random actions, ``push``, 64x64 image observations,
``reset_mode="sim"``, episodes autoreset at the time limit. One row per ``num_envs``: env steps per second
over all sub-envs (N x batched steps / s), time per batched step, and the ratio to one
:class:`~vap_env.sim.env.SimEnv` (64x64 image observations) timed just before that row. With several
``--num-inference-steps`` values, one set of rows per value (the model sampled with that many steps).

The stage table splits the same timed steps (ms per batched step, exclusive: a stage nested in another counts
once, in the inner one) into kinematics (PyBullet IK/FK and posing), prompt rendering (skeleton drawing and
its tensor), codec encoder, transformer (the denoising loop: ControlNet, transformer, scheduler), codec
decoder, reward/task state (the cube detector and the task's reward code), autoreset (starting the episodes
that ended: the simulator's first frame) and other (observations, info, batching, the env's own loop). The
stages are timed by wrapping those functions for the run (``StageProfiler``); on a GPU each timed section
synchronises, so the stages there add up to slightly more than an unprofiled step.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import numpy as np
import torch

# Run as a script from benchmarks/, so the sibling benchmark is importable: one timing loop for SimEnv.
from sim_speed import steps_per_second

import vap_env  # noqa: F401  (registers the envs)
from vap_env.control import ActionController
from vap_env.envs import imagined_world
from vap_env.envs.vector_env import WorldModelVectorEnv
from vap_env.kinematics import Robot
from vap_env.model import ActionToVideoModel, WorldModelConfig
from vap_env.model.codec import FrameAutoencoder
from vap_env.model.cogvideox import model as cogvideox_model
from vap_env.model.loading import load_world_model
from vap_env.model.protocol import WorldModel
from vap_env.prompts import ActionPrompter
from vap_env.sim.registration import env_id
from vap_env.tasks import TASKS, task_spec

STAGES = (
    "kinematics",
    "prompts",
    "codec encoder",
    "transformer",
    "codec decoder",
    "reward/state",
    "autoreset",
    "other",
)


class StageProfiler:
    """Accumulates the exclusive wall time of wrapped functions per stage.

    ``wrap(owner, name, stage)`` replaces ``owner.name`` (a class's method, a module's function, an object's
    bound method) by a timed call until :meth:`restore`. A call made inside another timed call is subtracted
    from the outer one, so each second is counted once, in the innermost stage.
    """

    def __init__(self, synchronize: Callable[[], None] | None = None) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._synchronize = synchronize
        self._nested: list[float] = []
        self._originals: list[tuple[Any, str, Any, bool]] = []

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        own = name in vars(owner)  # a class attribute seen through an instance is restored by deleting
        original = getattr(owner, name)
        profiler = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if profiler._synchronize is not None:
                profiler._synchronize()
            start = time.perf_counter()
            profiler._nested.append(0.0)
            try:
                return original(*args, **kwargs)
            finally:
                if profiler._synchronize is not None:
                    profiler._synchronize()
                elapsed = time.perf_counter() - start
                profiler.seconds[stage] += elapsed - profiler._nested.pop()
                if profiler._nested:
                    profiler._nested[-1] += elapsed

        self._originals.append((owner, name, vars(owner).get(name, original), own))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original, own in reversed(self._originals):
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
        self._originals.clear()

    def reset(self) -> None:
        self.seconds.clear()


@contextmanager
def profiled(model: WorldModel, world: imagined_world.ImaginedWorld) -> Iterator[StageProfiler]:
    """A :class:`StageProfiler` over the stages of an imagined step (module docstring), for ``world``."""
    cuda = getattr(model, "device", torch.device("cpu")).type == "cuda"
    profiler = StageProfiler(torch.cuda.synchronize if cuda else None)
    for name in ("pose", "fk", "ee_pose", "ik"):
        profiler.wrap(Robot, name, "kinematics")
    for name in ("step", "interpolate"):
        profiler.wrap(ActionController, name, "kinematics")
    profiler.wrap(ActionPrompter, "render", "prompts")
    profiler.wrap(world, "_prompt_tensor", "prompts")
    codec = getattr(model, "codec", None)
    if codec is not None:
        profiler.wrap(codec, "encode", "codec encoder")
        profiler.wrap(codec, "decode", "codec decoder")
    profiler.wrap(cogvideox_model, "sample_latents", "transformer")
    profiler.wrap(imagined_world, "estimate_task_state", "reward/state")
    profiler.wrap(world, "reward", "reward/state")
    profiler.wrap(world, "new_episode", "autoreset")
    try:
        yield profiler
    finally:
        profiler.restore()


def tiny_model(robot: str, device: str) -> ActionToVideoModel:
    """The CPU preset with a latent codec, as ``vap-env train --config tiny --codec DIR`` builds it."""
    torch.manual_seed(0)
    config = WorldModelConfig.tiny(robot=robot, image_size=64, patch_size=2)
    return ActionToVideoModel(config, codec=FrameAutoencoder()).to(device).eval()


def imagined_steps_per_second(
    model: WorldModel, task: str, num_envs: int, steps: int, num_inference_steps: int | None
) -> tuple[float, float, dict[str, float]]:
    """(env steps/s over all sub-envs, seconds per batched step, seconds per batched step by stage)."""
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
    cuda = getattr(model, "device", torch.device("cpu")).type == "cuda"
    with profiled(model, venv.world) as profiler:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            venv.step(venv.action_space.sample())
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    venv.close()
    stages = {s: profiler.seconds.get(s, 0.0) / steps for s in STAGES[:-1]}
    stages["other"] = elapsed / steps - sum(stages.values())
    return num_envs * steps / elapsed, elapsed / steps, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="default",
        help="'default' (the shipped model, the default), 'tiny' (the untrained CPU preset) or a saved model",
    )
    parser.add_argument("--robot", default="panda", help="the robot of --model tiny")
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
    parser.add_argument(
        "--num-inference-steps",
        type=int,
        nargs="+",
        default=None,
        metavar="K",
        help="denoising steps, one set of rows per value (e.g. 4 2 1 to compare them in one run); default: "
        "the model's own",
    )
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
    if args.model == "tiny":
        model: WorldModel = tiny_model(args.robot, args.device)
        label = "tiny preset (untrained)"
    else:
        model = load_world_model(args.model, args.device)
        label = "shipped default" if args.model == "default" else args.model
    sizes = args.num_envs or ([1, 8, 32, 128, 256] if args.device.startswith("cuda") else [1, 8, 32])
    robot = model.spec.robot
    c = getattr(model, "config", None)
    step_counts = args.num_inference_steps or [model.spec.num_inference_steps]
    parts = [type(getattr(model, "codec", model)).__name__]
    if c is not None:
        parts += [f"{c.num_layers} blocks", f"patch {c.patch_size}"]
    print(
        f"world model: {label} (samples with {model.spec.num_inference_steps} denoising steps), "
        f"{', '.join(parts)}, {args.device}, {torch.get_num_threads()} threads"
    )
    print(
        f"SimEnv {env_id(robot, args.task)} with 64x64 images is timed ({args.sim_steps} steps) just before "
        "each row; the row's ratio is to that rate, so a load that changes during the run cancels"
    )
    print(
        f"{'denoise':>8}{'num_envs':>10}{'env steps/s':>14}{'ms/batch step':>16}{'SimEnv/s':>10}{'vs SimEnv':>11}"
    )
    breakdown = {}
    sim_spec = {"obs_mode": "image", "image_size": 64}
    for k in step_counts:
        for n in sizes:
            sim = steps_per_second(env_id(robot, args.task), sim_spec, args.sim_steps)
            rate, per_step, breakdown[k, n] = imagined_steps_per_second(model, args.task, n, args.steps, k)
            print(f"{k:>8}{n:>10}{rate:>14.1f}{per_step * 1000:>16.1f}{sim:>10.1f}{rate / sim:>11.2f}")
    print("\nms per batched step by stage (exclusive; module docstring)")
    keys = list(breakdown)
    print(f"{'stage':<16}" + "".join(f"{f'K={k} N={n}':>12}" for k, n in keys))
    for stage in STAGES:
        print(f"{stage:<16}" + "".join(f"{breakdown[key][stage] * 1000:>12.2f}" for key in keys))
    total = "".join(f"{sum(breakdown[key].values()) * 1000:>12.2f}" for key in keys)
    print(f"{'total':<16}{total}")
    print(f"torch {torch.__version__}, numpy {np.__version__}, gymnasium {gym.__version__}")


if __name__ == "__main__":
    main()
