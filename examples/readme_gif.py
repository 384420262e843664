"""The README's animation: simulated and imagined rollouts side by side, for a few held-out seeds.

Each row replays one simulator episode of a push (then a reach) policy open loop in imagination (the world
model sees only the first frame and the episode's actions): simulator | imagined | visual action prompt.
A row whose episode ends early (the reach goal is hit) holds its last frame.

Run: ``python examples/readme_gif.py --out docs/images/imagined_vs_simulated.gif`` (about a minute on a
2-core CPU with the shipped default model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="world model directory or `default`")
    p.add_argument("--out", type=Path, default=Path("docs/images/imagined_vs_simulated.gif"))
    p.add_argument("--seeds", default="200000,200001,200002", help="comma-separated held-out push seeds")
    p.add_argument(
        "--reach-seeds", default="210000", help="comma-separated held-out reach seeds ('' for none)"
    )
    p.add_argument("--policy", default="scripted:noise=0.3,hesitation=0.1")
    p.add_argument("--camera", default="random", choices=("fixed", "random"))
    p.add_argument(
        "--steps", type=int, default=40, help="steps replayed per episode (a push reaches the cube after ~20)"
    )
    p.add_argument("--side", type=int, default=128, help="pixels per panel side")
    p.add_argument("--fps", type=int, default=6)
    args = p.parse_args()

    import gymnasium as gym
    import imageio.v2 as imageio
    import torch

    import vap_env  # noqa: F401  (registers the env ids)
    from vap_env.envs.imagined_world import ImaginedWorld
    from vap_env.evaluate.replay import open_loop_replays
    from vap_env.evaluate.report import replay_frames
    from vap_env.evaluate.runner import run_sim
    from vap_env.model.loading import load_world_model
    from vap_env.sim.registration import env_id

    torch.manual_seed(0)
    model = load_world_model(args.model)
    size = int(model.spec.image_size[0])
    rows = []
    for task, seeds in (("push", args.seeds), ("reach", args.reach_seeds)):
        seeds = [int(s) for s in seeds.split(",") if s.strip()]
        if not seeds:
            continue
        sim = gym.make(env_id(model.spec.robot, task), obs_mode="both", image_size=size, camera=args.camera,
                       max_episode_steps=args.steps)  # fmt: skip
        try:
            _, episodes = run_sim(sim, args.policy, seeds, args.steps, progress=False)
        finally:
            sim.close()
        world = ImaginedWorld(model, task=task, camera=args.camera, obs_mode="image", reset_mode="sim")
        try:
            rows += [replay_frames(r) for r in open_loop_replays(world, episodes, args.steps)]
        finally:
            world.close()
    length = max(len(r) for r in rows)
    frames = [np.concatenate([r[min(t, len(r) - 1)] for r in rows], axis=0) for t in range(length)]
    factor = args.side / rows[0][0].shape[0]  # replay_frames upscales each panel for video; shrink it
    if factor < 1:
        import cv2

        frames = [cv2.resize(f, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) for f in frames]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(args.out, frames, duration=1.0 / args.fps, loop=0)
    print(f"wrote {args.out} ({len(frames)} frames, {args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
