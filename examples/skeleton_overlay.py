"""Simulator frames with their visual action prompts, as a PNG.

Runs the scripted push expert in ``SimEnv`` for a few steps and writes a grid: the camera frame, the
skeleton prompt (rendered from the commanded robot state) drawn over it, and the prompt alone — at 64x64
(what the default world model sees) and at 256x256 (to see the detail).

    python examples/skeleton_overlay.py --out docs/images/skeleton_overlay.png
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from vap_env.policies import make_policy
from vap_env.sim.env import SimEnv


def frames_with_prompts(robot: str, image_size: int, steps: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Columns of [frame, overlay, prompt] at the given step indices, each upscaled to 256 px."""
    env = SimEnv(robot=robot, task="push", obs_mode="both", image_size=image_size)
    policy = make_policy("scripted:noise=0.0", env)
    obs, info = env.reset(seed=seed)
    policy.reset(seed=seed)
    columns = []
    for t in range(max(steps) + 1):
        if t in steps:
            frame = obs["image"]
            overlay = env.prompter.overlay(frame, info["commanded_joints"], info["commanded_gripper"])
            column = np.concatenate([frame, overlay, info["prompt"]], axis=0)
            scale = 256 // image_size
            columns.append(cv2.resize(column, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST))
        obs, _, terminated, truncated, info = env.step(policy.act(obs))
        if terminated or truncated:
            break
    env.close()
    return columns


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--robot", default="panda")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", default="skeleton_overlay.png")
    args = parser.parse_args()
    small = frames_with_prompts(args.robot, 64, (0, 8, 16), args.seed)
    large = frames_with_prompts(args.robot, 256, (8, 16), args.seed)
    gap = np.full((small[0].shape[0], 8, 3), 255, np.uint8)
    grid = np.concatenate([x for col in small + large for x in (col, gap)][:-1], axis=1)
    cv2.imwrite(args.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
