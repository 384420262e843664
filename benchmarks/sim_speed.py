"""Simulator env speed: steps per second with state-only and 64x64 / 128x128 image observations, and
recording throughput (``vap-env collect``) in episodes per minute.

Run: ``python benchmarks/sim_speed.py [--robot panda] [--task push] [--steps 300]``. Random actions, one
process, one env; episodes reset every ``max_episode_steps`` like a rollout would. Prints a small table with
the time per step and the ratio to the state-only env.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import gymnasium as gym
import numpy as np

import vap_env  # noqa: F401  (registers the envs)
from vap_env.sim.registration import env_id

CONFIGS = [
    ("state", {"obs_mode": "state"}),
    ("image 64x64", {"obs_mode": "image", "image_size": 64}),
    ("image 128x128", {"obs_mode": "image", "image_size": 128}),
    ("both 64x64, random camera", {"obs_mode": "both", "image_size": 64, "camera": "random"}),
]


def steps_per_second(name: str, kwargs: dict, steps: int) -> float:
    env = gym.make(name, **kwargs)
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(10):  # warm-up: first renders and IK calls
        env.step(env.action_space.sample())
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def recording_rate(robot: str, task: str, episodes: int, image_size: int) -> tuple[float, float]:
    """(episodes/min, frames/s) of recording the scripted expert, masks and all, to a temporary dataset."""
    from vap_env.recording import collect

    with tempfile.TemporaryDirectory() as out:
        summary = collect(
            robot, task, episodes, "scripted:noise=0.2", out, image_size=image_size, progress=False
        )
    return episodes / summary["seconds"] * 60, summary["frames"] / summary["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robot", default="panda")
    parser.add_argument("--task", default="push", choices=["push", "reach"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--episodes", type=int, default=10, help="episodes recorded for the recording figure")
    args = parser.parse_args()
    name = env_id(args.robot, args.task)
    rates = {label: steps_per_second(name, kwargs, args.steps) for label, kwargs in CONFIGS}
    base = rates["state"]
    print(f"{name}, {args.steps} random steps per row")
    print(f"{'observation':<28}{'steps/s':>10}{'ms/step':>10}{'vs state':>10}")
    for label, rate in rates.items():
        print(f"{label:<28}{rate:>10.0f}{1000 / rate:>10.2f}{rate / base:>10.2f}")
    for size in (64, 128):
        per_min, fps = recording_rate(args.robot, args.task, args.episodes, size)
        print(f"recording {size}x{size}: {per_min:.1f} episodes/min ({fps:.0f} frames/s), scripted expert")
    print(f"numpy {np.__version__}, gymnasium {gym.__version__}")


if __name__ == "__main__":
    main()
