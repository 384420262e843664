"""``evaluate`` end to end on a tiny untrained world model, ``rollout`` videos, and the CLI parsers."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from vap_env.cli import evaluate as evaluate_command
from vap_env.cli import rollout as rollout_command
from vap_env.cli.evaluate import split_policies
from vap_env.evaluate.config import EvaluateConfig
from vap_env.evaluate.report import plain, side_by_side, slug
from vap_env.evaluate.rollout import rollout
from vap_env.evaluate.runner import evaluate
from vap_env.evaluate.segmenter import SegmenterConfig
from vap_env.tasks import CONTACT_POLICIES, GRADED_POLICIES

POLICIES = ["scripted:noise=0", "random"]
HORIZON = 3


def _finite(values: object) -> bool:
    if isinstance(values, list):
        return len(values) > 0 and all(_finite(v) for v in values)
    return isinstance(values, int | float) and math.isfinite(values)


@pytest.fixture(scope="module")
def evaluation(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("evaluation")
    quick_segmenter = SegmenterConfig(episodes=2, heldout_episodes=1, every=4, steps=10, batch_size=4)
    report = evaluate(
        tiny_model_dir,
        robot="panda",
        task="push",
        policies=POLICIES,
        episodes=2,
        horizon=HORIZON,
        out_dir=out,
        max_steps=5,
        progress=False,
        segmenter_config=quick_segmenter,
    )
    return report, out


def test_evaluate_writes_every_promised_file(evaluation: tuple[dict, Path]) -> None:
    report, out = evaluation
    for name in (
        "report.json",
        "report.md",
        "success_scatter.png",
        "fidelity_vs_horizon.png",
        "videos/preview.png",
        "segmenter/segmenter.json",
        "segmenter/model.safetensors",
    ):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    for spec in POLICIES:
        for k in range(2):
            video = out / "videos" / f"{slug(spec)}_ep{k}.mp4"
            frames = _read_video(video)
            assert len(frames) == HORIZON + 1  # the shared start frame, then one per replayed step
            assert frames.shape[2] == 3 * frames.shape[1]  # simulator | imagined | prompt, square panels
    assert not list(out.glob("**/.*tmp*")), "temporary files were left behind"
    markdown = (out / "report.md").read_text()
    assert "| scripted:noise=0 |" in markdown and "repeat the first frame" in markdown


def _read_video(path: Path) -> np.ndarray:
    return np.stack(list(iio.imiter(path)))


def test_report_json_holds_the_keys_with_finite_numbers(evaluation: tuple[dict, Path]) -> None:
    _, out = evaluation
    report = json.loads((out / "report.json").read_text())
    for spec in POLICIES:
        row = report["policies"][spec]
        for key in ("sim_success", "imagined_success", "sim_return", "imagined_return"):
            assert _finite(row[key]), (spec, key)
        assert 0.0 <= row["sim_success"] <= 1.0 and 0.0 <= row["imagined_success"] <= 1.0
    # with two policies the correlations are +-1, or undefined (null) when a side has equal rates
    for key in ("pearson", "spearman"):
        value = report["correlation"][key]
        assert value is None or -1.0 <= value <= 1.0
    assert _finite(report["correlation"]["mmrv"])
    assert report["fidelity"]["horizons"] == [1, 2, 3]
    for section in ("fidelity", "baseline"):
        for key in ("psnr", "ssim", "robot_st_iou", "object_st_iou"):
            assert _finite(report[section][key]) and len(report[section][key]) == HORIZON, (section, key)
        assert report[section]["count"] == [4, 4, 4]  # 2 policies x 2 episodes reach every horizon
    assert _finite(report["segmenter"]["heldout_iou"])
    assert report["config"]["image_size"] == 32 and report["config"]["episodes"] == 2
    # the replays start from the simulator's frame and follow its commanded joints exactly
    assert report["replay"]["start_frames_identical"] is True
    assert report["replay"]["max_command_error_rad"] < 1e-4


def test_baseline_is_the_first_frame_repeated(evaluation: tuple[dict, Path]) -> None:
    report, _ = evaluation
    # an untrained model generates noise, so the first frame must beat it by far (PSNR ~24 vs ~8 dB)
    assert min(report["baseline"]["psnr"]) > max(report["fidelity"]["psnr"]) + 5


def test_rollout_writes_a_readable_video(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = rollout(tiny_model_dir, "random", tmp_path / "roll.mp4", task="push", steps=4, seed=3)
    frames = _read_video(tmp_path / "roll.mp4")
    # the start frame, then one per step; only an (estimated) success ends the episode before 4 steps
    assert result["frames"] == result["steps"] + 1 == len(frames)
    assert result["steps"] == 4 or result["success"]
    assert frames.shape[1:] == (256, 512, 3)  # 32 px upscaled 8x, imagined | prompt
    # the CLI handler writes the same kind of video and returns 0
    args = _parser().parse_args(
        [
            "rollout",
            "--model",
            str(tiny_model_dir),
            "--policy",
            "scripted:noise=0.2",
            "--out",
            str(tmp_path / "cli.mp4"),
            "--steps",
            "2",
            "--quiet",
        ]
    )
    assert rollout_command.run(args) == 0
    assert len(_read_video(tmp_path / "cli.mp4")) in (2, 3)  # stops early only on an estimated success


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vap-env")
    sub = parser.add_subparsers(dest="command", required=True)
    evaluate_command.add_parser(sub)
    rollout_command.add_parser(sub)
    return parser


def test_evaluate_parser_defaults_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["evaluate", "--model", "default", "--out", "x"])
    assert args.model == "default" and args.task == "push" and args.episodes == 10 and args.horizon == 16
    assert args.policies is None  # the task's family
    assert EvaluateConfig(task="push").policies == GRADED_POLICIES + CONTACT_POLICIES
    assert EvaluateConfig(task="reach").policies == GRADED_POLICIES and len(GRADED_POLICIES) == 5
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["evaluate", "--help"])
    assert exit_info.value.code == 0
    assert "MMRV" in capsys.readouterr().out


def test_missing_model_is_an_error_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(
        ["rollout", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "a.mp4")]
    )
    assert rollout_command.run(args) == 2
    assert "config.json" in capsys.readouterr().err


def test_unknown_policy_is_an_error_code(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(
        [
            "evaluate",
            "--model",
            str(tiny_model_dir),
            "--policies",
            "teleport",
            "--out",
            str(tmp_path / "eval"),
            "--quiet",
        ]
    )
    assert evaluate_command.run(args) == 2
    assert "unknown policy kind 'teleport'" in capsys.readouterr().err


def test_split_policies() -> None:
    text = "scripted:noise=0,scripted:noise=0.3,hesitation=0.1,random;random:seed=2"
    assert split_policies(text) == [
        "scripted:noise=0",
        "scripted:noise=0.3,hesitation=0.1",
        "random",
        "random:seed=2",
    ]


def test_plain_json_values_and_panels() -> None:
    assert plain({"a": np.float32(1.5), "b": [float("nan"), np.int64(2)], "c": np.array([1.0, np.inf])}) == {
        "a": 1.5,
        "b": [None, 2],
        "c": [1.0, None],
    }
    panel = side_by_side([np.zeros((64, 64, 3), np.uint8)] * 3, ("a", "b", "c"))
    assert panel.shape == (256, 768, 3) and panel.dtype == np.uint8
