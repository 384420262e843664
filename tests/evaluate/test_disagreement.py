"""The disagreement section: which episodes it lists, and a closed-loop video for each one it shows."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from vap_env.evaluate import disagreement, runner
from vap_env.evaluate.disagreement import (
    CandidateFrames,
    episode_rows,
    pick_episodes,
    policy_summary,
    video_seeds,
)
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
    section = disagreement_section({"p": SIM}, {"p": IMAGINED}, {"p": {12: {"video": "v.mp4"}}})
    rows = section["policies"]["p"]["success_disagreements"]
    assert [(r["seed"], r["video"]) for r in rows] == [(11, None), (12, "v.mp4")]
    assert section["videos"] == ["v.mp4"] and "all_reproduced" not in section
    assert all("reproduced" not in r for r in rows)


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
    assert "reproduced" not in text and "the scored episode itself" in text


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
        assert "reproduced" not in row
    assert "all_reproduced" not in d
    per_episode = report["policies"]["random"]["per_episode"]
    assert [r["seed"] for r in per_episode] == [400_000, 400_001]
    assert "sim_object_displacement" not in per_episode[0]  # reach has no cube


def _frames_of(seeds: list[int]) -> list[np.ndarray]:
    """Stand-in captured frames that name their episode: every pixel is the seed (mod 256)."""
    return [np.full((2, 1, 1, 3), s % 256, dtype=np.uint8) for s in seeds]


def _batches(result: PolicyResult, sizes: list[int]) -> list[PolicyResult]:
    """``result`` cut into consecutive batches of ``sizes``, each with its stand-in frames."""
    out, start = [], 0
    for size in sizes:
        batch = result.select(range(start, start + size))
        batch.frames = _frames_of(batch.seeds.tolist())
        out.append(batch)
        start += size
    return out


def test_candidates_choose_what_full_information_would() -> None:
    rng = np.random.default_rng(0)
    for trial in range(300):
        limit = int(rng.integers(0, 6))
        keeper, full, failed = CandidateFrames(limit), {}, set()
        for p in range(int(rng.integers(1, 4))):
            name, n = f"p{p}", int(rng.integers(1, 12))
            seeds = list(range(100 * p, 100 * p + n))
            # coarse distances: ties in the gap, and in success, are common
            sim = _result(rng.random(n) < 0.5, rng.integers(0, 4, n) / 10, seeds)
            imagined = _result(rng.random(n) < 0.5, rng.integers(0, 4, n) / 10, seeds)
            sizes = []
            while sum(sizes) < n:
                sizes.append(int(rng.integers(1, n - sum(sizes) + 1)))
            for batch in _batches(imagined, sizes):
                keeper.add(name, sim, batch)
                assert keeper.held() <= 2 * limit
            if rng.random() < 0.2:  # a policy that fails in imagination: no video of it
                keeper.discard(name)
                failed.add(name)
                continue
            keeper.commit(name)
            assert keeper.held() <= limit
            full[name] = pick_episodes(episode_rows(sim, imagined))
        chosen = keeper.chosen()
        assert {n: [c.seed for c in cs] for n, cs in chosen.items()} == video_seeds(full, limit), trial
        for candidates in chosen.values():
            for c in candidates:
                assert (c.frames == c.seed % 256).all()  # the frames of that very episode


def test_a_policy_with_more_candidates_than_the_limit_keeps_only_the_limit() -> None:
    seeds = list(range(8))
    sim = _result([True] * 8, [0.01] * 8, seeds)
    gaps = [0.1, 0.5, 0.3, 0.7, 0.2, 0.6, 0.4, 0.8]  # every episode disagrees on success
    imagined = _result([False] * 8, [0.01 + g for g in gaps], seeds)
    keeper = CandidateFrames(limit=2)
    for batch in _batches(imagined, [3, 3, 2]):
        keeper.add("p", sim, batch)
        assert keeper.held() <= 2
    keeper.commit("p")
    assert keeper.held() == 2
    assert [c.seed for c in keeper.chosen()["p"]] == [7, 3]  # the two largest gaps
    with pytest.raises(ValueError, match="capture=True"):
        keeper.add("p", sim, imagined.select([0]))


def test_the_videos_show_the_scored_episodes_and_capture_changes_no_number(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[np.ndarray] = []
    shown_sim: list[np.ndarray] = []
    paths: list[Path] = []
    paired, write = disagreement._paired_frames, disagreement.write_video

    def spy_paired(sim, imagined, *flags):  # noqa: ANN001, ANN202 - a pass-through spy
        shown.append(imagined)
        shown_sim.append(sim)
        return paired(sim, imagined, *flags)

    def spy_write(path, frames):  # noqa: ANN001, ANN202
        paths.append(Path(path))
        return write(path, frames)

    monkeypatch.setattr(disagreement, "_paired_frames", spy_paired)
    monkeypatch.setattr(disagreement, "write_video", spy_write)
    kwargs = dict(robot="panda", task="reach", policies=["random", "scripted:noise=0.5"], episodes=5,
                  horizon=2, max_steps=4, progress=False, videos_per_policy=0, batch_size=2)  # fmt: skip
    with_videos = runner.evaluate(tiny_model_dir, out_dir=tmp_path / "a", disagreement_videos=3,
                                  segmenter_config=_quick(), **kwargs)  # fmt: skip
    assert len(shown) == len(paths) == 3 == len(with_videos["disagreement"]["videos"])

    # the scored episodes, captured again in the same batches (3 of them: 2 + 2 + 1)
    run = runner._prepare(tiny_model_dir, "panda", "reach", runner.EvaluateConfig.seed, 5, 4, "fixed",
                          None, None, 2, False)  # fmt: skip
    compared: list[int] = []
    # the simulator panel is the whole episode, though the evaluation kept these state-only policies' episodes
    # cut to the replay horizon (3 frames): it was run again, and is the episode a full recording gives
    sim_env = run.sim_env()
    for path, sim in zip(paths, shown_sim, strict=True):
        name, seed = path.stem.rsplit("_seed", 1)
        source = next(p for p in ("random", "scripted:noise=0.5") if disagreement.slug(p) == name)
        _, (whole,) = runner.run_sim(sim_env, source, [int(seed)], run.max_steps)
        assert len(sim) == whole.num_frames > 3
        np.testing.assert_array_equal(sim, whole.frames)
    sim_env.close()
    for name in ("random", "scripted:noise=0.5"):
        again = runner.run_imagined(run.vector_env, name, run.seeds, run.max_steps, 2, capture=True)
        recorded = with_videos["policies"][name]["per_episode"]
        assert again.success.tolist() == [r["imagined_success"] for r in recorded]
        assert again.final_distance.tolist() == [r["imagined_final_distance"] for r in recorded]
        for path, imagined in zip(paths, shown, strict=True):
            if path.name.startswith(disagreement.slug(name) + "_seed"):
                seed = int(path.stem.rsplit("_seed", 1)[1])
                np.testing.assert_array_equal(imagined, again.frames[run.seeds.index(seed)])
                compared.append(seed)
    assert len(compared) == 3

    without = runner.evaluate(tiny_model_dir, out_dir=tmp_path / "b", disagreement_videos=0,
                              segmenter=tmp_path / "a" / "segmenter", **kwargs)  # fmt: skip
    assert not without["disagreement"]["videos"]
    for key in ("policies", "correlation", "fidelity", "baseline", "replay"):
        assert json.dumps(with_videos[key], sort_keys=True) == json.dumps(without[key], sort_keys=True), key
    picked = [with_videos["disagreement"]["policies"], without["disagreement"]["policies"]]
    for section in picked:
        for rows in section.values():
            for row in (r for key in rows.values() for r in key):
                row.pop("video")
    assert picked[0] == picked[1]


def test_run_imagined_hands_each_batch_its_frames_and_keeps_none(tiny_model_dir: Path) -> None:
    run = runner._prepare(tiny_model_dir, "panda", "reach", 7, 3, 3, "fixed", None, None, 2, False)
    batches: list[PolicyResult] = []
    plain = runner.run_imagined(run.vector_env, "random", run.seeds, 3, 2)
    captured = runner.run_imagined(run.vector_env, "random", run.seeds, 3, 2, capture=True,
                                   on_batch=batches.append)  # fmt: skip
    assert [b.seeds.tolist() for b in batches] == [run.seeds[:2], run.seeds[2:]]
    assert all(len(b.frames) == len(b.seeds) for b in batches) and captured.frames == []
    for key in ("success", "returns", "lengths", "final_distance", "object_displacement", "seeds"):
        np.testing.assert_array_equal(getattr(plain, key), getattr(captured, key))
    assert batches[0].frames[0].shape == (int(plain.lengths[0]) + 1, 32, 32, 3)


def _quick():
    from vap_env.evaluate.segmenter import SegmenterConfig

    return SegmenterConfig(episodes=2, heldout_episodes=1, every=4, steps=10, batch_size=4)
