"""Open-loop fidelity of trained world models on held-out datasets, one table per dataset (e.g. per task).

Each model replays every held-out episode's actions open loop from its first frame (never seeing another
simulator frame; the sampler's noise is seeded from the episode's seed, so a rerun gives the same
figures); PSNR, SSIM, robot-mask ST-IoU (the shipped segmenter, or ``--segmenter``) and, for push,
cube-mask ST-IoU are scored at each horizon against the simulator, beside the trivial baseline that repeats
the first frame. The scoring is the prompt-kind comparison's (``vap_env.evaluate.comparison``).

Run (the default model's per-task figures in its model card; about 2 minutes on a 2-core CPU)::

    python benchmarks/heldout_fidelity.py --models default runs/default runs/compare/skeleton \\
        --data data/panda_push_heldout data/panda_reach_heldout --json docs/results/default_model_heldout.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vap_env.data import EpisodeDataset
from vap_env.evaluate.comparison import BASELINE, evaluate_variant, fidelity_table, markdown_table
from vap_env.evaluate.report import write_benchmark
from vap_env.evaluate.segmenter import RobotSegmenter
from vap_env.model.loading import default_model_path, default_segmenter_path, load_world_model

HORIZONS = (1, 4, 8, 16)


def markdown(results: dict) -> str:
    """One comparison table (:func:`~vap_env.evaluate.comparison.markdown_table`) per dataset."""
    parts = []
    for name, part in results["datasets"].items():
        table = {"variants": {m: {"model": t} for m, t in part["models"].items()}, "baseline": part[BASELINE]}
        parts += [f"{name} ({part['episodes']} episodes, task {part['task']})", "",
                  markdown_table(table, HORIZONS), ""]  # fmt: skip
    return "\n".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=["default"],
        help="saved models (`default`, a model/ folder or a `vap-env train` OUT); default: default",
    )
    p.add_argument(
        "--data", nargs="+", required=True, type=Path, help="held-out datasets (`vap-env collect`)"
    )
    p.add_argument("--segmenter", type=Path, help="robot segmenter directory; default: the shipped one")
    p.add_argument("--json", type=Path, required=True, help="where the figures go")
    p.add_argument("--episodes", type=int, help="only the first N episodes of each dataset; default: all")
    args = p.parse_args()  # fmt: skip

    segmenter = RobotSegmenter.load(args.segmenter or default_segmenter_path())
    models = {name: load_world_model(name) for name in args.models}
    results: dict = {"models": {}, "datasets": {}, "horizons": list(HORIZONS)}
    for name in args.models:
        path = default_model_path() if name == "default" else Path(name)
        results["models"][name] = str(path)
    for data_dir in args.data:
        dataset = EpisodeDataset(data_dir)
        episodes = [dataset[i] for i in range(min(len(dataset), args.episodes or len(dataset)))]
        part: dict = {"task": episodes[0].task, "episodes": len(episodes), "models": {}, "seconds": {}}
        for name, model in models.items():
            start = time.perf_counter()
            scored = evaluate_variant(model, episodes, segmenter, max(HORIZONS), progress=True)
            table = fidelity_table(scored["curves"], HORIZONS)
            part["models"][name] = table["model"]
            part[BASELINE] = table["baseline"]
            part["seconds"][name] = round(time.perf_counter() - start, 1)
        results["datasets"][str(data_dir)] = part
    write_benchmark(args.json, results, markdown)


if __name__ == "__main__":
    main()
