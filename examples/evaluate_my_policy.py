"""Evaluate your own policy in imagination and in the simulator, beside the scripted family.

Trains a small stable-baselines3 PPO on the Panda reach task in the simulator (state observations), saves it
as a checkpoint, then runs it, the scripted expert and random actions from the same initial states in both
worlds with the shipped default world model, and prints the table: success in each world, their difference
with 95% intervals, and where the worlds disagree. The same evaluation from the command line:

    vap-env evaluate --task reach --policies "mine=sb3:ppo_reach.zip;scripted;random" --out reports/mine

Run (145 s on a shared 2-core CPU, most of it the PPO training; that PPO then succeeds in 4 of 10 reach
episodes in both worlds, the scripted expert in 10, random actions in none):

    python examples/evaluate_my_policy.py --out reports/my_policy
    python examples/evaluate_my_policy.py --checkpoint ppo_reach.zip --timesteps 0   # evaluate a saved one

Load only checkpoints you trust: an SB3 zip is unpickled when it is loaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def train_ppo(checkpoint: Path, timesteps: int, seed: int) -> Path:
    """A PPO on ``vap_env/PandaReach-Sim-v0`` (state observations), saved to ``checkpoint``."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    import vap_env  # noqa: F401  (registers the env ids)

    env = gym.make("vap_env/PandaReach-Sim-v0", obs_mode="state")
    model = PPO("MlpPolicy", env, n_steps=min(1024, max(64, timesteps)), batch_size=64, seed=seed, verbose=0)
    model.learn(total_timesteps=timesteps, progress_bar=False)
    model.save(checkpoint)
    env.close()
    return checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=Path("ppo_reach.zip"), help="where PPO is saved")
    parser.add_argument("--timesteps", type=int, default=30_000, help="PPO steps (0: use --checkpoint as is)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per policy and world; default: 10")
    parser.add_argument("--horizon", type=int, default=8, help="open-loop replay steps scored; default: 8")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="episode length cap (default: the task's)"
    )
    parser.add_argument("--model", default="default", help="world model directory, or `default`")
    parser.add_argument("--seed", type=int, default=400_000, help="seed of the first episode")
    parser.add_argument("--out", type=Path, default=Path("reports/my_policy"), help="report directory")
    args = parser.parse_args(argv)

    if args.timesteps > 0:
        print(f"training PPO for {args.timesteps} steps on PandaReach-Sim-v0 ...")
        train_ppo(args.checkpoint, args.timesteps, seed=0)
    elif not args.checkpoint.is_file():
        print(
            f"evaluate_my_policy: no checkpoint at {args.checkpoint}; train one (--timesteps N)",
            file=sys.stderr,
        )
        return 2

    from vap_env.evaluate import evaluate

    policies = {"mine": f"sb3:{args.checkpoint}", "scripted": "scripted", "random": "random"}
    report = evaluate(
        args.model,
        task="reach",
        policies=policies,
        episodes=args.episodes,
        horizon=args.horizon,
        max_steps=args.max_steps,
        seed=args.seed,
        out_dir=args.out,
        videos_per_policy=1,
    )
    print(
        "\n| policy | sim success [95% CI] | imagined success [95% CI] | imagined - sim |\n|---|---|---|---|"
    )
    for name, row in report["policies"].items():
        if row.get("status") != "ok":
            print(f"| {name} | {row.get('status')}: {row.get('error', '')} | | |")
            continue
        sim, imagined = row["sim_success_ci95"], row["imagined_success_ci95"]
        print(
            f"| {name} | {row['sim_success']:.2f} [{sim[0]:.2f}, {sim[1]:.2f}] | {row['imagined_success']:.2f} "
            f"[{imagined[0]:.2f}, {imagined[1]:.2f}] | {row['success_difference']:+.2f} |"
        )
    print(f"\nfull report, intervals and disagreeing episodes: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
