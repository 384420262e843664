"""The ``vap-env evaluate`` and ``vap-env rollout`` commands.

:func:`add_evaluate_parser` and :func:`add_rollout_parser` register the subcommands on the ``vap-env``
parser; :func:`run_evaluate` and :func:`run_rollout` are their handlers (exit codes). Everything heavy is
imported inside the handlers, so ``vap-env --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from vap_env.evaluate.defaults import DEFAULT_POLICIES, SEED

EVALUATE_DESCRIPTION = """\
Evaluate a world model against the PyBullet simulator, in two ways.

Policy evaluation: every policy runs EPISODES episodes in the simulator and in imagination, from the same
seeded initial states (seeds SEED..SEED+EPISODES-1) and with the same policy noise. Success rates and mean
returns per policy in both worlds; across policies the Pearson and Spearman correlation of success rates and
the MMRV (mean maximum rank violation, SIMPLER): does imagination rank the policies as the simulator does?

Fidelity: each simulator episode is replayed open loop in imagination (the model gets the episode's actions
from its first frame and never sees another simulator frame) and compared with the simulator at horizons
1..HORIZON: PSNR, SSIM, and the ST-IoU of robot masks (a segmenter fitted on simulator frames, its held-out
IoU reported) and of cube masks (red-colour detector), beside the repeat-the-first-frame baseline.

OUT gets report.json, report.md, success_scatter.png, fidelity_vs_horizon.png, videos/ (simulator |
imagined | prompt) and segmenter/ (reuse it with --segmenter)."""

EVALUATE_EPILOG = """\
examples:
  vap-env evaluate --out eval/default                      # the shipped model, 5 policies x 10 episodes
  vap-env evaluate --model runs/wm --robot panda --task push --episodes 10 --horizon 16 --out eval/wm
  vap-env evaluate --model runs/wm --policies scripted:noise=0,random --episodes 20 --out eval/two
  vap-env evaluate --model runs/wm --out eval/again --segmenter eval/wm/segmenter
"""

ROLLOUT_DESCRIPTION = """\
Roll a policy out in imagination and save the video: the world-model env starts from the simulator's first
frame for SEED, the policy acts on the generated frames, and each video frame shows the imagined frame beside
the visual action prompt it was generated from. Stops at an (estimated) success or after STEPS steps."""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="default",
        metavar="DIR",
        help="world model: a save_pretrained directory, a `vap-env train` output, or `default` (the shipped "
        "tiny Panda push and reach model, 64x64); default: default",
    )
    p.add_argument(
        "--robot", default=None, help="robot name, checked against the model's; default: the model's"
    )
    p.add_argument("--task", default="push", choices=("push", "reach"), help="task; default: push")
    p.add_argument(
        "--seed",
        type=int,
        default=SEED,
        metavar="N",
        help=f"reset seed of the first episode; default: {SEED} (initial states `vap-env collect`, "
        "which starts at 0, and the default model's training never drew)",
    )
    p.add_argument(
        "--camera",
        default="fixed",
        choices=("fixed", "random"),
        help="fixed: the robot's default view; random: a viewpoint per seed; default: fixed",
    )
    p.add_argument("--device", default=None, help="where the model runs (cpu, cuda, cuda:1); default: cpu")
    p.add_argument(
        "--inference-steps",
        type=int,
        default=None,
        metavar="N",
        help="denoising steps per generated frame; default: the model's",
    )


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds ``evaluate`` to the ``vap-env`` subparsers; returns its parser (handler: :func:`run_evaluate`)."""
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a world model against the simulator (policies, fidelity)",
        description=EVALUATE_DESCRIPTION,
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(p)
    p.add_argument(
        "--policies",
        default=",".join(DEFAULT_POLICIES),
        metavar="SPEC[,SPEC...]",
        help="policy specs, comma-separated; a KEY=VALUE item continues the spec before it, so "
        "`scripted:noise=0.3,hesitation=0.1,random` is two policies (`;` also separates); "
        "default: a graded family of five, " + "; ".join(DEFAULT_POLICIES),
    )
    p.add_argument(
        "--episodes", type=int, default=10, metavar="N", help="episodes per policy and world; default: 10"
    )
    p.add_argument("--horizon", type=int, default=16, metavar="H", help="open-loop replay steps; default: 16")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="episode length limit in both worlds; default: the task's (push 50, reach 30)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--segmenter",
        default=None,
        metavar="DIR",
        help="a fitted robot segmenter (an earlier evaluation's OUT/segmenter); default: with --model default "
        "the one shipped with it, else fit one on fresh simulator episodes (a few CPU-minutes at 64 px) and "
        "save it to OUT/segmenter",
    )
    p.add_argument("--videos", type=int, default=2, metavar="N", help="replay videos per policy; default: 2")
    p.add_argument(
        "--batch-size", type=int, default=16, metavar="N", help="episodes imagined together; default: 16"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_evaluate)
    return p


def add_rollout_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds ``rollout`` to the ``vap-env`` subparsers; returns its parser (handler: :func:`run_rollout`)."""
    p = subparsers.add_parser(
        "rollout",
        help="roll a policy out in imagination and save the video",
        description=ROLLOUT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  vap-env rollout --model runs/wm --policy scripted:noise=0.2 "
        "--out rollout.mp4 --steps 40\n",
    )
    _add_common(p)
    p.add_argument(
        "--policy",
        default="scripted:noise=0",
        metavar="SPEC",
        help="policy spec: scripted[:noise=X,hesitation=Y,seed=Z] or random; default: scripted:noise=0",
    )
    p.add_argument("--out", required=True, metavar="FILE.mp4", help="the video to write")
    p.add_argument(
        "--steps", type=int, default=None, metavar="N", help="most steps; default: the task's limit"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_rollout)
    return p


def split_policies(text: str) -> list[str]:
    """``"scripted:noise=0.3,hesitation=0.1,random"`` -> ``["scripted:noise=0.3,hesitation=0.1", "random"]``.

    Specs are separated by ``;``, or by ``,`` where the next item is not a ``KEY=VALUE`` argument.
    """
    specs: list[str] = []
    for part in (p.strip() for chunk in text.split(";") for p in chunk.split(",")):
        if not part:
            continue
        if "=" in part and ":" not in part and specs:
            specs[-1] += f",{part}"  # an argument of the spec before
        else:
            specs.append(part)
    return specs


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``vap-env evaluate``: runs the evaluation, prints a summary; returns the exit code."""
    from vap_env.evaluate.runner import evaluate

    try:
        policies = split_policies(args.policies)
        if args.episodes < 1 or args.horizon < 1:
            raise ValueError(f"--episodes and --horizon must be >= 1, got {args.episodes} and {args.horizon}")
        report = evaluate(
            args.model,
            robot=args.robot,
            task=args.task,
            policies=policies,
            episodes=args.episodes,
            horizon=args.horizon,
            out_dir=args.out,
            seed=args.seed,
            device=args.device,
            progress=not args.quiet,
            max_steps=args.max_steps,
            camera=args.camera,
            num_inference_steps=args.inference_steps,
            segmenter=args.segmenter,
            videos_per_policy=args.videos,
            batch_size=args.batch_size,
        )
    except (ValueError, OSError) as error:  # OSError: missing or corrupt model / segmenter files
        print(f"vap-env evaluate: error: {error}", file=sys.stderr)
        return 2
    print(_summary(report, args.out))
    return 0


def _summary(report: dict, out: str) -> str:
    def fmt(x: float | None) -> str:
        return "n/a" if x is None or x != x else f"{x:.3f}"

    c, f, b = report["correlation"], report["fidelity"], report["baseline"]
    lines = [f"{'policy':<36} {'sim':>6} {'imagined':>9}"]
    lines += [
        f"{spec:<36} {r['sim_success']:>6.2f} {r['imagined_success']:>9.2f}"
        for spec, r in report["policies"].items()
    ]
    lines.append(
        f"success rates: Pearson {fmt(c['pearson'])}, Spearman {fmt(c['spearman'])}, MMRV {fmt(c['mmrv'])}"
    )
    h = len(f["horizons"])
    lines.append(
        f"open loop h={h}: PSNR {fmt(f['psnr'][-1])} dB (first frame {fmt(b['psnr'][-1])}), robot ST-IoU "
        f"{fmt(f['robot_st_iou'][-1])} (first frame {fmt(b['robot_st_iou'][-1])}); segmenter held-out IoU "
        f"{fmt(report['segmenter']['heldout_iou'])}"
    )
    lines.append(f"report: {out}/report.md ({report['timing_seconds']['total']:.0f} s)")
    return "\n".join(lines)


def run_rollout(args: argparse.Namespace) -> int:
    """Handler of ``vap-env rollout``: rolls the policy out, writes the video; returns the exit code."""
    from vap_env.evaluate.rollout import rollout

    try:
        result = rollout(
            args.model,
            args.policy,
            args.out,
            robot=args.robot,
            task=args.task,
            steps=args.steps,
            seed=args.seed,
            camera=args.camera,
            device=args.device,
            num_inference_steps=args.inference_steps,
            progress=not args.quiet,
        )
    except (ValueError, OSError) as error:
        print(f"vap-env rollout: error: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {result['video']}: {result['frames']} frames, {result['steps']} steps, "
        f"{'success' if result['success'] else 'no success'}, return {result['return']:.3f}"
    )
    return 0
