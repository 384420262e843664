"""The disagreement section: which episodes it lists, and a closed-loop video for each one it shows."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from vap_env.evaluate import runner
from vap_env.evaluate.disagreement import episode_rows, pick_episodes, policy_summary, video_seeds
from vap_env.evaluate.markdown import markdown
from vap_env.evaluate.policy_runs import PolicyResult
from vap_env.evaluate.summary import disagreement_section, policy_report


def _result(success: list[bool], distance: list[float], seeds: list[int]) -> PolicyResult:
    n = len(seeds)
    return PolicyResult(np.array(success), np.zeros(n), np.full(n, 5), np.array(distance),
                        np.full(n, 0.01), np.array(seeds))  # fmt: skip


SEEDS = [10, 11, 12, 13, 14]
SIM = _result([True, True, False, False, True], [0.02, 0.03, 0.20, 0.15, 0.04], SEEDS)
IMAGINED = _result([True, False, True, False, True], [0.02, 0.09, 0.04, 0.16, 0.30], SEEDS)


def test_the_section_lists_exactly_the_disagreeing_seeds() -> None:
    picked = pick_episodes(episode_rows(SIM, IMAGINED))
    assert [r["seed"] for r in picked["success_disagreements"]] == [11, 12]
    # |gaps|: 0, 0.06, 0.16, 0.01, 0.26
    assert [r["seed"] for r in picked["largest_distance_gaps"]] == [14, 12, 11]
    assert video_seeds({"p": picked}, limit=3) == {"p": [12, 11, 14]}
    # over policies: success disagreements of any policy before distance gaps
    other = pick_episodes(episode_rows(SIM, SIM))  # no disagreement, gaps 0
    assert video_seeds({"q": other, "p": picked}, limit=2) == {"p": [12, 11]}
    assert video_seeds({"p": picked, "q": other}, limit=4) == {"p": [12, 11, 14], "q": [10]}
    section = disagreement_section(
        {"p": SIM}, {"p": IMAGINED}, {"p": {12: {"video": "v.mp4", "reproduced": True}}}
    )
    rows = section["policies"]["p"]["success_disagreements"]
    assert [(r["seed"], r["video"], r["reproduced"]) for r in rows] == [(11, None, None), (12, "v.mp4", True)]
    assert section["all_reproduced"] is True and section["videos"] == ["v.mp4"]


def test_rates_carry_wilson_intervals_and_the_difference() -> None:
    row = policy_summary(SIM, IMAGINED)
    assert row["success_difference"] == pytest.approx(0.0)
    assert row["sim_success_ci95"] == pytest.approx([0.2307, 0.8824], abs=1e-4)  # 3 of 5
    assert row["sim_final_distance"] == pytest.approx(0.088) and row[
        "imagined_final_distance"
    ] == pytest.approx(0.122)
    assert row["sim_object_displacement"] == pytest.approx(0.01)


def test_the_markdown_explains_and_tabulates_the_disagreement() -> None:
    report = policy_report({"p": "random", "q": "scripted"}, {"p": SIM}, {"p": IMAGINED},
                           {"p": {"status": "ok"}, "q": {"status": "failed", "failed_in": "imagined",
                                                        "error": "PolicyError: bad action"}})  # fmt: skip
    report["disagreement"] = disagreement_section({"p": SIM}, {"p": IMAGINED}, {})
    report["config"] = dict(robot="panda", task="push", model="m", prompt="skeleton", image_size=32,
                            num_inference_steps=2, episodes=5, seed=10, max_steps=5)  # fmt: skip
    text = markdown(report, [])
    assert "## Where imagination and the simulator disagree" in text
    assert "| p | ok | 0.60 [0.23, 0.88] | 0.60 [0.23, 0.88] |" in text
    assert "Success disagrees in 2 of 5 episodes." in text and "| 11 | True | False |" in text
    assert "`q` failed in the imagination: PolicyError: bad action" in text


def test_a_video_per_shown_episode(tiny_model_dir: Path, tmp_path: Path) -> None:
    report = runner.evaluate(tiny_model_dir, robot="panda", task="reach", policies=["random", "scripted"],
                             episodes=2, horizon=2, max_steps=3, progress=False, out_dir=tmp_path,
                             videos_per_policy=0, disagreement_videos=4, segmenter_config=_quick())  # fmt: skip
    d = report["disagreement"]
    shown = [r for p in d["policies"].values() for rows in p.values() for r in rows if r["video"]]
    # both episodes of each policy are among its top-3 distance gaps: 4 videos, one per episode
    assert (
        len({r["video"] for r in shown})
        == 4
        == len(d["videos"])
        == len(report["files"]["disagreement_videos"])
    )
    for row in shown:
        frames = np.stack(list(iio.imiter(tmp_path / row["video"])))
        assert frames.shape[2] == 2 * frames.shape[1]  # simulator | imagined
        assert len(frames) == 4  # the start frame and three steps: both worlds truncate at 3
        assert row["reproduced"] is True
    assert d["all_reproduced"] is True
    per_episode = report["policies"]["random"]["per_episode"]
    assert [r["seed"] for r in per_episode] == [400_000, 400_001]
    assert "sim_object_displacement" not in per_episode[0]  # reach has no cube


def _quick():
    from vap_env.evaluate.segmenter import SegmenterConfig

    return SegmenterConfig(episodes=2, heldout_episodes=1, every=4, steps=10, batch_size=4)
