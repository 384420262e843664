"""Simulator env speed: steps per second of ``SimEnv`` with state-only and 64x64 / 128x128 image observations,
next to panda-gym (``PandaPush-v3``, the reference of its kind) when it is installed, and recording throughput
(``vap-env collect``) in episodes per minute.

Run: ``python benchmarks/sim_speed.py [--robot panda] [--task push] [--steps 300]``. Random actions, one
process, one env per row; episodes reset at the time limit (50 steps) or on success, like a rollout. All rows
are measured in one run and interleaved (``--chunk`` steps of each row in turn), so a background load slows
them alike and the ratios stay meaningful where the absolute rates do not.

panda-gym rows (``pip install 'vap-env[bench]'``, or ``pip install panda-gym==3.0.7``; skipped with a
message without it): ``PandaPush-v3`` (``PandaReach-v3`` for ``--task reach``) state-only, and the same
env with ``render_width=render_height=64``, ``renderer="Tiny"`` and ``env.render()`` after every step
(panda-gym draws shadows, its fixed setting). The comparison table divides each ``SimEnv`` rate by the
panda-gym rate of the same kind: above 1.0 the ``SimEnv`` row is faster.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import vap_env  # noqa: F401  (registers the envs)
from vap_env.sim.registration import env_id

SIM_CONFIGS = [
    ("state", {"obs_mode": "state"}),
    ("state, info_prompt=False", {"obs_mode": "state", "info_prompt": False}),
    ("image 64x64", {"obs_mode": "image", "image_size": 64}),
    ("image 64x64, info_prompt=False", {"obs_mode": "image", "image_size": 64, "info_prompt": False}),
    ("image 128x128", {"obs_mode": "image", "image_size": 128}),
    ("both 64x64, random camera", {"obs_mode": "both", "image_size": 64, "camera": "random"}),
]
PANDA_GYM_IDS = {"push": "PandaPush-v3", "reach": "PandaReach-v3"}
PANDA_GYM_STATE = "panda-gym {id}, state"
PANDA_GYM_IMAGE = "panda-gym {id}, 64x64 Tiny render()"
# (SimEnv row, panda-gym row) pairs of the comparison table
COMPARISONS = [
    ("state, info_prompt=False", PANDA_GYM_STATE),
    ("state", PANDA_GYM_STATE),
    ("image 64x64, info_prompt=False", PANDA_GYM_IMAGE),
    ("image 64x64", PANDA_GYM_IMAGE),
]


class Timer:
    """One env stepped with random actions; ``run(n)`` adds ``n`` timed steps (plus ``render()`` if asked)."""

    def __init__(self, make: Callable[[], gym.Env], render: bool = False, warmup: int = 10) -> None:
        self.env, self.render = make(), render
        self.env.action_space.seed(0)
        self.env.reset(seed=0)
        self.steps, self.seconds = 0, 0.0
        self._untimed(warmup)  # first renders and IK calls

    def _step(self) -> None:
        _, _, terminated, truncated, _ = self.env.step(self.env.action_space.sample())
        if self.render:
            self.env.render()
        if terminated or truncated:
            self.env.reset()

    def _untimed(self, n: int) -> None:
        for _ in range(n):
            self._step()

    def run(self, n: int) -> None:
        start = time.perf_counter()
        for _ in range(n):
            self._step()
        self.seconds += time.perf_counter() - start
        self.steps += n

    @property
    def rate(self) -> float:
        return self.steps / self.seconds

    def close(self) -> None:
        self.env.close()


def steps_per_second(name: str, kwargs: dict, steps: int) -> float:
    """Steps/s of ``gym.make(name, **kwargs)`` over ``steps`` random steps on its own (``env_speed.py``)."""
    timer = Timer(lambda: gym.make(name, **kwargs))
    try:
        timer.run(steps)
        return timer.rate
    finally:
        timer.close()


def panda_gym_makers(task: str) -> dict[str, tuple[Callable[[], gym.Env], bool]]:
    """The panda-gym rows (name -> (make, render each step)); empty when panda-gym is not installed."""
    if importlib.util.find_spec("panda_gym") is None:
        return {}
    import panda_gym  # noqa: F401  (registers its envs)

    pid = PANDA_GYM_IDS[task]
    image = {"render_mode": "rgb_array", "renderer": "Tiny", "render_width": 64, "render_height": 64}
    return {
        PANDA_GYM_STATE.format(id=pid): (lambda: gym.make(pid), False),
        PANDA_GYM_IMAGE.format(id=pid): (lambda: gym.make(pid, **image), True),
    }


def interleaved_rates(makers: dict[str, tuple[Callable[[], gym.Env], bool]], steps: int, chunk: int) -> dict:
    """Steps/s of every row, measured ``chunk`` steps at a time in turn until each has ``steps``."""
    timers = {name: Timer(make, render) for name, (make, render) in makers.items()}
    try:
        done = 0
        while done < steps:
            n = min(chunk, steps - done)
            for timer in timers.values():
                timer.run(n)
            done += n
        return {name: timer.rate for name, timer in timers.items()}
    finally:
        for timer in timers.values():
            timer.close()


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
    parser.add_argument("--steps", type=int, default=300, help="timed steps per row")
    parser.add_argument("--chunk", type=int, default=25, help="steps of one row before the next row's turn")
    parser.add_argument(
        "--episodes", type=int, default=10, help="episodes recorded for the recording figure (0: skip it)"
    )
    args = parser.parse_args()
    name = env_id(args.robot, args.task)
    makers: dict[str, tuple[Callable[[], gym.Env], bool]] = {
        label: (lambda kwargs=kwargs: gym.make(name, **kwargs), False) for label, kwargs in SIM_CONFIGS
    }
    reference = panda_gym_makers(args.task)
    makers.update(reference)
    rates = interleaved_rates(makers, args.steps, args.chunk)
    base = rates["state"]
    print(f"{name}, {args.steps} random steps per row, interleaved in chunks of {args.chunk}")
    print(f"{'env':<46}{'steps/s':>10}{'ms/step':>10}{'vs state':>10}")
    for label, rate in rates.items():
        print(f"{label:<46}{rate:>10.0f}{1000 / rate:>10.2f}{rate / base:>10.2f}")
    if reference:
        pid = PANDA_GYM_IDS[args.task]
        print(f"\nSimEnv vs panda-gym {pid} (ratio of steps/s, same run; > 1: SimEnv faster)")
        for sim_label, ref_label in COMPARISONS:
            ref = ref_label.format(id=pid)
            print(f"{sim_label:<32} vs {ref:<44}{rates[sim_label] / rates[ref]:>6.2f}x")
    else:
        print("\npanda-gym is not installed: no panda-gym rows (pip install 'vap-env[bench]' adds them)")
    if args.episodes > 0:
        print()
        for size in (64, 128):
            per_min, fps = recording_rate(args.robot, args.task, args.episodes, size)
            print(
                f"recording {size}x{size}: {per_min:.1f} episodes/min ({fps:.0f} frames/s), scripted expert"
            )
    versions = f"numpy {np.__version__}, gymnasium {gym.__version__}"
    if reference:
        import panda_gym

        versions += f", panda-gym {panda_gym.__version__}"
    print(versions)


if __name__ == "__main__":
    main()
