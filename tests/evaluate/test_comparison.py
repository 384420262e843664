"""The prompt-kind comparison: variant flags, open-loop scoring of recorded episodes, table, JSON and plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vap_env.cli import build_parser
from vap_env.data import EpisodeDataset
from vap_env.evaluate.comparison import (
    BASELINE,
    VARIANTS,
    evaluate_variant,
    fidelity_table,
    markdown_table,
    train_arguments,
    write_results,
)
from vap_env.evaluate.segmenter import SegmenterConfig, fit_for_evaluation
from vap_env.recording import collect


def test_every_variant_is_a_valid_train_command() -> None:
    parser = build_parser()
    for variant in VARIANTS:
        args = parser.parse_args(["train", "--data", "d", "--out", "o", *train_arguments(variant)])
        assert args.prompt == VARIANTS[variant]["prompt"]
    assert train_arguments("controlnet_only") == ["--prompt", "skeleton", "--lora-rank", "0"]
    assert train_arguments("lora_only") == ["--prompt", "skeleton", "--controlnet-layers", "0"]
    with pytest.raises(ValueError, match="known: none, state"):
        train_arguments("text")


def test_fidelity_table_picks_the_horizons() -> None:
    curves = {"model": {"psnr": [30.0, 25.0, 20.0], "psnr_sem": [1.0, 1.0, 1.0], "count": [4, 4, 2]}}
    table = fidelity_table(curves, horizons=(1, 3, 8))
    assert table["model"]["psnr"] == {"1": 30.0, "3": 20.0, "8": None}
    assert table["model"]["count"] == {"1": 4, "3": 2, "8": 0}
    nan = fidelity_table({"model": {"psnr": [math.nan]}}, horizons=(1,))
    assert nan["model"]["psnr"] == {"1": None}


@pytest.fixture(scope="module")
def heldout(tmp_path_factory: pytest.TempPathFactory) -> list:
    out = tmp_path_factory.mktemp("heldout") / "panda_push"
    collect("panda", "push", 2, "scripted:noise=0.3", out, image_size=32, camera="random", seed=7,
            max_steps=6, progress=False)  # fmt: skip
    data = EpisodeDataset(out)
    return [data[i] for i in range(len(data))]


def test_evaluate_variant_replays_recorded_episodes(
    tiny_model_dir: Path, heldout: list, tmp_path: Path
) -> None:
    from vap_env.model.loading import load_world_model

    quick = SegmenterConfig(episodes=2, heldout_episodes=1, every=4, steps=10, batch_size=4)
    segmenter = fit_for_evaluation("panda", "push", 32, "random", quick)
    scored = evaluate_variant(load_world_model(tiny_model_dir), heldout, segmenter, horizon=4)
    # the replays start from the recorded first frames (same seed -> same scene and random camera)
    assert scored["start_matches"] == 1.0
    assert scored["command_error"] < 1e-5
    curves = scored["curves"]
    assert len(curves["model"]["psnr"]) == 4 and curves["model"]["count"][0] == 2
    # the baseline repeats the first frame: its PSNR at horizon 1 is that of frames 0 and 1 of the episodes
    first = np.mean([_psnr(e.frames[0], e.frames[1]) for e in heldout])
    assert curves["baseline"]["psnr"][0] == pytest.approx(first, abs=1e-3)
    # an untrained model makes noise: far below the baseline
    assert curves["model"]["psnr"][0] < curves["baseline"]["psnr"][0] - 5

    results = {"variants": {"skeleton": {"model": fidelity_table(curves)["model"]}},
               "baseline": fidelity_table(curves)["baseline"],
               "curves": {"skeleton": curves["model"], BASELINE: curves["baseline"]}}  # fmt: skip
    write_results(results, tmp_path / "c.json", tmp_path / "c.png")
    assert json.loads((tmp_path / "c.json").read_text())["baseline"]["psnr"]["1"] == pytest.approx(
        first, 1e-3
    )
    assert (tmp_path / "c.png").stat().st_size > 10_000
    table = markdown_table(results).splitlines()
    assert table[0].startswith("| conditioning | PSNR h1 | PSNR h8 | PSNR h16 | SSIM h1")
    assert table[2].startswith("| `skeleton` |") and table[3].startswith(f"| `{BASELINE}` |")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return min(10 * math.log10(255.0**2 / mse), 100.0) if mse > 0 else 100.0
