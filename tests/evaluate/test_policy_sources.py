"""``evaluate`` with policies given as objects, classes and factories; failures, Ctrl-C, argument checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vap_env.cli import build_parser
from vap_env.cli import evaluate as evaluate_command
from vap_env.cli.evaluate import split_policies
from vap_env.evaluate import policy_runs, runner
from vap_env.evaluate.policy_runs import named_sources, run_imagined, split_named
from vap_env.evaluate.runner import _Run, evaluate
from vap_env.evaluate.segmenter import SegmenterConfig
from vap_env.policies import RandomPolicy

QUICK_SEGMENTER = SegmenterConfig(episodes=2, heldout_episodes=1, every=4, steps=10, batch_size=4)
FAST = dict(robot="panda", task="push", episodes=2, horizon=2, max_steps=4, progress=False)


class Zero:
    """A policy object: no motion, gripper open."""

    def __init__(self, env: Any = None) -> None:
        self.resets: list[int | None] = []

    def reset(self, seed: int | None = None) -> None:
        self.resets.append(seed)

    def act(self, obs: Any) -> np.ndarray:
        return np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32)


class FailsAtStep3(Zero):
    def act(self, obs: Any) -> np.ndarray:
        self.steps = getattr(self, "steps", 0) + 1
        if self.steps == 3:
            raise RuntimeError("boom at step 3")
        return super().act(obs)


class BatchedRandom:
    """A batch policy: row i's noise comes from seeds[i] alone."""

    def __init__(self, env: Any) -> None:
        self.space = env.action_space

    def reset_batch(self, seeds: list[int]) -> None:
        self.policies = [RandomPolicy(self.space, seed=s) for s in seeds]

    def act_batch(self, obs_batch: Any) -> np.ndarray:
        return np.stack([p.act(None) for p in self.policies])


@pytest.fixture
def sim_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the policies whose simulator episodes ran (``run_sim`` spied on)."""
    calls: list[str] = []
    real = runner.run_sim

    def spy(
        env: Any,
        policy: Any,
        seeds: list[int],
        max_steps: int,
        progress: bool = False,
        name: Any = None,
        frames: int | None = None,
    ):
        calls.append(name)
        return real(env, policy, seeds, max_steps, progress, name, frames=frames)

    monkeypatch.setattr(runner, "run_sim", spy)
    return calls


def test_a_dict_mixes_a_spec_an_object_and_a_factory(tiny_model_dir: Path, tmp_path: Path) -> None:
    mine = Zero()
    report = evaluate(
        tiny_model_dir,
        policies={"expert": "scripted", "mine": mine, "made": lambda env: Zero(env), "cls": Zero},
        out_dir=tmp_path,
        segmenter_config=QUICK_SEGMENTER,
        **FAST,
    )
    rows = report["policies"]
    assert list(rows) == ["expert", "mine", "made", "cls"]
    assert all(r["status"] == "ok" and r["episodes"] == 2 for r in rows.values())
    assert rows["expert"]["source"] == "scripted" and rows["mine"]["source"] == "<Zero object>"
    # the one object acted in both worlds, reset with each episode's seed (imagined one at a time)
    assert mine.resets == [400_000, 400_001, 400_000, 400_001]  # no re-run: the videos are these episodes
    assert report["correlation"]["policies"] == list(rows)
    assert report["status"] == "complete" and report["config"]["policies"] == list(rows)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["policies"]["mine"]["per_episode"][0]["seed"] == 400_000


def test_per_episode_and_batched_policies_see_the_same_noise_in_both_worlds(tiny_model_dir: Path) -> None:
    run = _Run(model=runner.load_world_model(tiny_model_dir, None), robot="panda", task="reach",
               camera="fixed", max_steps=3, seeds=[7, 8, 9], num_inference_steps=None, device=None,
               batch_size=3, progress=False)  # fmt: skip
    sim_env = run.sim_env()
    try:
        for source in ("random", BatchedRandom):
            built = policy_runs.as_policy(source, sim_env)
            _, episodes = policy_runs.run_sim(sim_env, built, run.seeds, 3, name="p")
            actions = _imagined_actions(run, source)
            for episode, imagined in zip(episodes, actions, strict=True):
                np.testing.assert_array_equal(episode.actions, imagined[: len(episode.actions)])
    finally:
        sim_env.close()


def _imagined_actions(run: _Run, source: Any) -> list[np.ndarray]:
    """The actions the imagined episodes of ``source`` took, by spying on the vector env's ``step``."""
    taken: list[np.ndarray] = []

    def make_env(n: int) -> Any:
        env = run.vector_env(n)
        step = env.step
        env.step = lambda actions: (taken.append(np.array(actions)), step(actions))[1]  # type: ignore[method-assign]
        return env

    run_imagined(make_env, source, run.seeds, 3, batch_size=3)
    return list(np.stack(taken, axis=1))  # (N, T, A)


def test_a_failing_policy_is_marked_and_the_others_reported(
    tiny_model_dir: Path, tmp_path: Path, sim_calls: list[str]
) -> None:
    report = evaluate(
        tiny_model_dir,
        policies={"a": "random", "bad": FailsAtStep3, "b": "scripted"},
        out_dir=tmp_path,
        segmenter_config=QUICK_SEGMENTER,
        **FAST,
    )
    bad = report["policies"]["bad"]
    assert bad["status"] == "failed" and bad["failed_in"] == "sim" and "boom at step 3" in bad["error"]
    assert "sim_success" not in bad and report["status"] == "partial"
    assert report["correlation"]["policies"] == ["a", "b"]
    assert report["policies"]["b"]["status"] == "ok" and sim_calls[:3] == ["a", "bad", "b"]
    # then the disagreement videos' episodes, run again in full, of the finished policies only
    assert set(sim_calls[3:]) <= {"a", "b"}
    assert report["replay"]["episodes"] == 4  # the failed policy's episodes are not replayed
    markdown = (tmp_path / "report.md").read_text()
    assert "`bad` failed in the simulator: act() raised RuntimeError: boom at step 3" in markdown


def test_ctrl_c_after_the_first_policy_writes_a_partial_report(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = runner.run_imagined
    calls = []

    def interrupt_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_imagined", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        evaluate(
            tiny_model_dir, policies=["random", "scripted", "scripted:noise=1"], out_dir=tmp_path, **FAST
        )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "interrupted"
    assert [r["status"] for r in report["policies"].values()] == ["ok", "interrupted", "not run"]
    assert report["policies"]["random"]["sim_success"] is not None and "fidelity" not in report
    assert "**Interrupted**" in (tmp_path / "report.md").read_text()


def test_the_cli_exits_130_on_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> dict:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "evaluate", interrupted)
    args = build_parser().parse_args(["evaluate", "--out", str(tmp_path), "--quiet"])
    assert evaluate_command.run(args) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--robot", "ur5"], "unknown robot 'ur5'; robots with a simulated arm: kuka_iiwa, panda, xarm6"),
        (["--robot", "kuka_iiwa"], "the world model was trained for robot 'panda', not 'kuka_iiwa'"),
        (["--policies", "scripted;teleport"], "'teleport': unknown policy kind 'teleport'"),
        (["--policies", "mine=scripted:speed=2;random"], "'mine': bad policy argument 'speed=2'"),
    ],
)
def test_bad_arguments_fail_before_any_episode(
    argv: list[str],
    message: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    sim_calls: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(
        ["evaluate", "--model", str(tiny_model_dir), "--out", str(tmp_path), "--quiet", *argv]
    )
    assert evaluate_command.run(args) == 2
    assert message in capsys.readouterr().err
    assert sim_calls == [] and not (tmp_path / "report.json").exists()


def test_a_segmenter_of_another_size_fails_before_any_episode(
    tiny_model_dir: Path, tmp_path: Path, sim_calls: list[str]
) -> None:
    class Segmenter64(runner.RobotSegmenter):
        def __init__(self) -> None:
            pass

        image_size = 64  # type: ignore[assignment]

    with pytest.raises(ValueError, match="fitted on 64px frames; the world model makes 32px"):
        evaluate(tiny_model_dir, policies=["random"], out_dir=tmp_path, segmenter=Segmenter64(), **FAST)
    assert sim_calls == []


def test_names_and_specs() -> None:
    assert split_named("mine=sb3:x.zip") == ("mine", "sb3:x.zip")
    assert split_named("scripted:noise=0.3") == (
        "scripted:noise=0.3",
        "scripted:noise=0.3",
    )  # the spec names itself
    assert named_sources(["rand=random", "scripted:noise=0"]) == {
        "rand": "random",
        "scripted:noise=0": "scripted:noise=0",
    }
    with pytest.raises(ValueError, match="given twice"):
        named_sources(["random", "random"])
    with pytest.raises(ValueError, match="got 'random'"):
        named_sources("random")
    text = "mine=sb3:ppo_reach.zip;scripted;random;rand=random:seed=2;scripted:noise=0.3,hesitation=0.1"
    assert split_policies(text) == [
        "mine=sb3:ppo_reach.zip",
        "scripted",
        "random",
        "rand=random:seed=2",
        "scripted:noise=0.3,hesitation=0.1",
    ]
    assert split_policies("scripted;b=random") == ["scripted", "b=random"]  # a `;` starts a new policy


def test_help_warns_that_sb3_zips_are_unpickled(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--help"])
    assert "unpickled" in capsys.readouterr().out
