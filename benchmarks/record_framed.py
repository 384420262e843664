"""Record Panda push episodes under another default camera (a framing candidate of benchmarks/framing.py).

`vap-env collect` records with the camera of the robot's description; this records the same way (same policy
specs, seeds, random viewpoints drawn around the default camera, the dataset layout `vap-env train` and
`vap-env train-codec` read) with the camera's target, distance and pitch replaced. The episodes keep the
robot name ``panda``: each stores its own camera, so prompts and training use the framing they were seen in.

    python benchmarks/record_framed.py --out data/framed128_push --image-size 128 --episodes 50 \\
        --policy scripted:noise=0.3,hesitation=0.1 --seed 0

Used for the experiments in docs/results/interaction_experiments.md (its default framing is the "workspace
wide" row there: target (0.5, 0, 0.08), 0.8 m, pitch -40).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import gymnasium as gym
from tqdm.auto import tqdm

import vap_env  # noqa: F401  (registers the env ids)
from vap_env.data import DatasetWriter
from vap_env.description import load_description
from vap_env.policies import as_policy
from vap_env.recording import record_episode
from vap_env.sim.registration import env_id


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="dataset directory (continued if it exists)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--policy", default="scripted:noise=0.3,hesitation=0.1")
    parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed SEED+i")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--camera", default="random", choices=("fixed", "random"))
    parser.add_argument("--target", type=float, nargs=3, default=(0.5, 0.0, 0.08), metavar=("X", "Y", "Z"))
    parser.add_argument("--distance", type=float, default=0.8)
    parser.add_argument("--pitch", type=float, default=-40.0)
    args = parser.parse_args()

    base = load_description("panda")
    camera = dataclasses.replace(
        base.camera, target=tuple(args.target), distance=args.distance, pitch=args.pitch
    )
    desc = dataclasses.replace(base, camera=camera)
    env = gym.make(env_id("panda", "push"), robot=desc, obs_mode="both", image_size=args.image_size,
                   camera=args.camera)  # fmt: skip
    writer = DatasetWriter(
        args.out,
        {
            "robot": "panda",
            "task": "push",
            "image_size": [args.image_size, args.image_size],
            "camera_mode": args.camera,
            "camera_spec": dataclasses.asdict(camera),
            "action_mode": "ee_delta",
            "fps": env.metadata.get("render_fps"),
            "max_episode_steps": env.spec.max_episode_steps,
        },
    )
    done = writer.recorded_seeds()
    todo = [args.seed + i for i in range(args.episodes) if args.seed + i not in done]
    policy = as_policy(args.policy, env)
    start = time.perf_counter()
    for seed in tqdm(todo, desc=f"record {args.policy}", unit="ep"):
        writer.add(record_episode(env, policy, seed, args.policy))
    env.close()
    print(f"recorded {len(todo)} episodes in {time.perf_counter() - start:.0f} s into {args.out}")


if __name__ == "__main__":
    main()
