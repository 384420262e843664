"""``vap-env evaluate``: a world model against the PyBullet simulator, for policy evaluation and fidelity.

The evaluation flags come from the torch-free :class:`~vap_env.evaluate.config.EvaluateConfig`, and so do
the ones ``vap-env rollout`` shares (:func:`add_world_flags`); everything heavy is imported inside
:func:`run`, so ``vap-env --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from vap_env.cli.arguments import Flag, add_config_flags, config_values
from vap_env.evaluate.config import EvaluateConfig
from vap_env.tasks import TASKS

DESCRIPTION = """\
Evaluate a world model against the PyBullet simulator, in two ways.

Policy evaluation: every policy runs EPISODES episodes in the simulator and in imagination, from the same
seeded initial states (seeds SEED..SEED+EPISODES-1) and with the same policy noise. Success rates and mean
returns per policy in both worlds; across policies the Pearson and Spearman correlation of success rates and
the MMRV (mean maximum rank violation, SIMPLER): does imagination rank the policies as the simulator does?

Fidelity: each simulator episode is replayed open loop in imagination (the model gets the episode's actions
from its first frame and never sees another simulator frame) and compared with the simulator at horizons
1..HORIZON: PSNR, SSIM, and the ST-IoU of robot masks (a segmenter fitted on simulator frames, its held-out
IoU reported) and of cube masks (red-colour detector), beside the repeat-the-first-frame baseline.

Disagreement: per policy the 95% interval of each success rate and of their difference, the mean final
distance to the goal (and the cube's displacement) in both worlds, the episodes where the worlds disagree on
success and the ones with the largest final-distance gaps, with closed-loop videos (simulator | imagined) of
the worst of them.

Policies: `--policies "mine=sb3:ppo_reach.zip;scripted;random"` (`;` between policies, NAME=SPEC names one in
the report). Every policy is built once before any episode runs, so a bad spec or a missing file fails at
once. SB3 checkpoints (sb3:FILE.zip) are unpickled, which can run arbitrary code: load only trusted ones.

OUT gets report.json, report.md, success_scatter.png, fidelity_vs_horizon.png, videos/ (simulator |
imagined | prompt; disagreement/: simulator | imagined) and segmenter/ (reuse it with --segmenter).

Exit status: 0; 1 when some policy failed (the others are reported); 2 on a bad argument (nothing ran); 130
when interrupted (Ctrl-C: the policies finished so far are reported)."""

EPILOG = """\
examples:
  vap-env evaluate --out eval/default                      # the shipped model, 5 policies x 10 episodes
  vap-env evaluate --model runs/wm --robot panda --task push --episodes 10 --horizon 16 --out eval/wm
  vap-env evaluate --model runs/wm --policies scripted:noise=0,random --episodes 20 --out eval/two
  vap-env evaluate --task reach --policies "mine=sb3:ppo_reach.zip;scripted;random" --out eval/mine
  vap-env evaluate --model runs/wm --out eval/again --segmenter eval/wm/segmenter
"""

WORLD_FLAGS = ("robot", "task", "seed", "camera", Flag("num_inference_steps", flag="--inference-steps"))
"""The :class:`EvaluateConfig` fields ``evaluate`` and ``rollout`` both expose: the world and its seed."""


def split_policies(text: str) -> list[str]:
    """``"scripted:noise=0.3,hesitation=0.1,random"`` -> ``["scripted:noise=0.3,hesitation=0.1", "random"]``.

    Specs are separated by ``;``, or by ``,`` where the next item is not a ``KEY=VALUE`` argument. An item
    may be named, ``NAME=SPEC`` (``mine=sb3:ppo.zip``, ``rand=random``); after a ``,`` a ``KEY=VALUE``
    without ``:`` continues the spec before, so separate a named policy by ``;``.
    """
    specs: list[str] = []
    for chunk in text.split(";"):
        first = len(specs)  # a `;` always starts a new policy
        for part in (p.strip() for p in chunk.split(",")):
            if not part:
                continue
            if "=" in part and ":" not in part and len(specs) > first:
                specs[-1] += f",{part}"  # an argument of the spec before
            else:
                specs.append(part)
    return specs


def _policy_specs(text: str) -> tuple[str, ...]:
    return tuple(split_policies(text))


EVALUATE_FLAGS = (
    Flag(
        "policies",
        type=_policy_specs,
        metavar="[NAME=]SPEC[;...]",
        help="the policies, `;`-separated (or comma-separated: after a comma a KEY=VALUE item continues the "
        "spec before it, so `scripted:noise=0.3,hesitation=0.1,random` is two policies); NAME=SPEC names one "
        "in the report (`mine=sb3:ppo.zip;scripted;random`); at least two for correlations. SB3 zips are "
        "unpickled, which can run code: load only trusted checkpoints",
        default_text="the task's family: "
        + "; ".join(f"{name}: " + ", ".join(spec.policy_family) for name, spec in TASKS.items()),
    ),
    "episodes",
    Flag("horizon", metavar="H"),
    "max_steps",
    Flag("videos_per_policy", flag="--videos"),
    "batch_size",
    "disagreement_videos",
)
"""The other :class:`EvaluateConfig` fields ``vap-env evaluate`` exposes."""


def add_world_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of the world model and the simulated world: ``--model``, ``--robot``, ``--seed``..."""
    parser.add_argument(
        "--model",
        default="default",
        metavar="DIR",
        help="world model: a save_pretrained directory, a `vap-env train` output, or `default` (the shipped "
        "tiny Panda push model, 128x128, with object dynamics; it serves reach too); default: default",
    )
    add_config_flags(parser, EvaluateConfig, WORLD_FLAGS[:4])
    parser.add_argument(
        "--device", default=None, help="where the model runs (cpu, cuda, cuda:1); default: cpu"
    )
    add_config_flags(parser, EvaluateConfig, WORLD_FLAGS[4:])


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers ``evaluate`` on the ``vap-env`` subparsers; returns its parser (handler: :func:`run`)."""
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a world model against the simulator (policies, fidelity)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_world_flags(p)
    add_config_flags(p, EvaluateConfig, EVALUATE_FLAGS[:4])
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--segmenter",
        default=None,
        metavar="DIR",
        help="a fitted robot segmenter (an earlier evaluation's OUT/segmenter); default: with --model default "
        "the one shipped with it, else fit one on fresh simulator episodes (a few CPU-minutes at 64 px) and "
        "save it to OUT/segmenter",
    )
    add_config_flags(p, EvaluateConfig, EVALUATE_FLAGS[4:])
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``vap-env evaluate``: runs the evaluation, prints a summary; returns the exit code (0; 1:
    some policy failed; 2: a bad argument, nothing ran; 130: interrupted, the finished policies reported)."""
    from vap_env.evaluate.runner import evaluate

    try:
        config = EvaluateConfig(**config_values(args, WORLD_FLAGS + EVALUATE_FLAGS))
        report = evaluate(
            args.model,
            out_dir=args.out,
            device=args.device,
            progress=not args.quiet,
            segmenter=args.segmenter,
            **dataclasses.asdict(config),
        )
    except (ValueError, OSError) as error:  # OSError: missing or corrupt model / segmenter files
        print(f"vap-env evaluate: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"vap-env evaluate: interrupted; the finished policies are in {args.out}/report.md",
            file=sys.stderr,
        )
        return 130
    print(summary(report, args.out))
    failed = [name for name, row in report["policies"].items() if row["status"] == "failed"]
    for name in failed:
        print(
            f"vap-env evaluate: policy {name!r} failed: {report['policies'][name]['error']}", file=sys.stderr
        )
    return 1 if failed else 0


def summary(report: dict, out: str) -> str:
    """The lines ``vap-env evaluate`` prints: success rates per policy, correlations, fidelity at ``H``."""

    def fmt(x: float | None) -> str:
        return "n/a" if x is None or x != x else f"{x:.3f}"

    c = report["correlation"]
    lines = [f"{'policy':<36} {'sim':>6} {'imagined':>9}"]
    for name, r in report["policies"].items():
        if "sim_success" in r:
            lines.append(f"{name:<36} {r['sim_success']:>6.2f} {r['imagined_success']:>9.2f}")
        else:
            lines.append(f"{name:<36} {r['status']:>16}")
    lines.append(
        f"success rates: Pearson {fmt(c['pearson'])}, Spearman {fmt(c['spearman'])}, MMRV {fmt(c['mmrv'])}"
    )
    if "fidelity" in report:
        f, b = report["fidelity"], report["baseline"]
        lines.append(
            f"open loop h={len(f['horizons'])}: PSNR {fmt(f['psnr'][-1])} dB (first frame {fmt(b['psnr'][-1])}), "
            f"robot ST-IoU {fmt(f['robot_st_iou'][-1])} (first frame {fmt(b['robot_st_iou'][-1])}); segmenter "
            f"held-out IoU {fmt(report['segmenter']['heldout_iou'])}"
        )
    lines.append(f"report: {out}/report.md ({report['timing_seconds']['total']:.0f} s)")
    return "\n".join(lines)
