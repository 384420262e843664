"""Policy evaluation in imagination against the simulator, and open-loop fidelity: :func:`evaluate`.

From the same seeded initial states every policy of a family runs in the PyBullet simulator (``SimEnv``) and
in the world model (:class:`~vap_env.envs.vector_env.WorldModelVectorEnv`, the episodes of a policy batched;
:mod:`vap_env.evaluate.policy_runs`); a world model is useful for policy evaluation when it ranks the
policies as the simulator does (Pearson, Spearman, MMRV of success rates) and when the two worlds agree
episode by episode (:mod:`vap_env.evaluate.disagreement`). The simulator's episodes are then replayed open
loop in imagination (:mod:`vap_env.evaluate.replay`) for per-horizon fidelity against the
repeat-first-frame baseline. :mod:`vap_env.evaluate.report` writes the results.

Every argument is checked (robot, task, model, segmenter, and every policy built once against the simulator)
before any episode runs. A policy that fails while running is marked failed and the others go on; Ctrl-C
during the policy loop writes the report of the policies finished so far, then raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from vap_env.data import Episode
from vap_env.envs.imagined_world import ImaginedWorld, load_world_model
from vap_env.envs.vector_env import WorldModelVectorEnv
from vap_env.evaluate.config import EvaluateConfig
from vap_env.evaluate.disagreement import CandidateFrames, write_disagreement_videos
from vap_env.evaluate.markdown import WORLDS
from vap_env.evaluate.policy_runs import (
    PolicyResult,
    PolicySource,
    check_policies,
    error_message,
    imagined_batch_size,
    named_sources,
    run_imagined,
    run_sim,
)
from vap_env.evaluate.replay import Replay, aggregate_fidelity, fidelity_curves, open_loop_replays
from vap_env.evaluate.report import write_outputs
from vap_env.evaluate.segmenter import RobotSegmenter, SegmenterConfig, fit_for_evaluation
from vap_env.evaluate.summary import disagreement_section, policy_report, segmenter_report
from vap_env.model.protocol import WorldModel
from vap_env.policies import reads_images
from vap_env.sim.registration import arm_robots, env_id
from vap_env.tasks import task_spec

__all__ = ["evaluate", "run_imagined", "run_sim", "PolicyResult"]

logger = logging.getLogger(__name__)


def evaluate(
    model_dir: str | Path | WorldModel,
    robot: str | None = EvaluateConfig.robot,
    task: str = EvaluateConfig.task,
    policies: Mapping[str, PolicySource] | Sequence[str] | None = EvaluateConfig.policies,
    episodes: int = EvaluateConfig.episodes,
    horizon: int = EvaluateConfig.horizon,
    out_dir: str | Path = "evaluation",
    seed: int = EvaluateConfig.seed,
    device: str | torch.device | None = None,
    progress: bool = True,
    max_steps: int | None = EvaluateConfig.max_steps,
    camera: str = EvaluateConfig.camera,
    num_inference_steps: int | None = EvaluateConfig.num_inference_steps,
    segmenter: RobotSegmenter | str | Path | None = None,
    segmenter_config: SegmenterConfig | None = None,
    videos_per_policy: int = EvaluateConfig.videos_per_policy,
    batch_size: int = EvaluateConfig.batch_size,
    disagreement_videos: int = EvaluateConfig.disagreement_videos,
) -> dict[str, Any]:
    """Evaluates a world model for policy evaluation and open-loop fidelity against the simulator.

    Episode ``k`` of every policy starts from the initial state of seed ``seed + k`` in both worlds, and the
    policy's own randomness is reseeded with it, so both worlds see the same policy noise (for batch
    policies and shared objects see :mod:`vap_env.evaluate.policy_runs`).

    Args:
        model_dir: A ``save_pretrained`` directory (or a ``vap-env train`` output), ``"default"``, or a model.
        robot: Checked against the simulator's robots and the model's robot (``None``: the model's).
        task: ``"push"`` or ``"reach"``.
        policies: ``name -> source`` (a spec string, a policy object with ``act``/``reset`` or a batch policy
            with ``act_batch``, a policy class, or a factory ``(env) -> policy``), or spec strings (each
            named by its text, or ``NAME=SPEC``); at least two for correlations. SB3 checkpoints are
            unpickled: load only trusted ones. ``None``: the task's family (``TaskSpec.policy_family``).
        episodes: Episodes per policy and world.
        horizon: Steps ``H`` of the open-loop replays (fidelity at horizons ``1..H``).
        out_dir: Where ``report.json``, ``report.md``, the plots, ``videos/`` and a fitted ``segmenter/`` go.
        seed: Seed of the first episode.
        device: Where the model runs (``None``: CPU, or where a given model already is).
        progress: Show progress bars.
        max_steps: Episode length limit in both worlds (``None``: the task's registered limit).
        camera: ``"fixed"`` or ``"random"`` (a viewpoint per seed, the same in both worlds).
        num_inference_steps: Denoising steps (``None``: the model's default).
        segmenter: A fitted robot segmenter or its directory; ``None`` fits one on fresh simulator episodes
            (other seeds) and saves it to ``out_dir/segmenter`` (with ``model_dir="default"``: the segmenter
            shipped with the default model, unless ``segmenter_config`` asks for a new fit).
        segmenter_config: How to fit it when ``segmenter`` is ``None``.
        videos_per_policy: Side-by-side open-loop replay videos written per policy.
        batch_size: Episodes imagined together.
        disagreement_videos: Closed-loop videos (simulator | imagined) of the episodes where the worlds
            disagree most, over all policies (success first, then final distance): the scored episodes
            themselves, their imagined frames captured as they run (at most one batch's frames and
            ``2 * disagreement_videos`` episodes' are held at a time).

    Returns:
        The report, also written to ``out_dir/report.json`` (NaN, e.g. a correlation of constant rates, as
        ``null``): ``status`` (``complete``, ``partial``: some policy failed, ``interrupted``);
        ``policies.<name>``: ``status`` (``ok``, ``failed`` with ``failed_in`` and ``error``,
        ``interrupted``, ``not run``), ``source``, ``{sim,imagined}_{success,return,length}``,
        ``{sim,imagined}_success_ci95`` (Wilson), ``success_difference`` (imagined - sim) and its
        ``success_difference_ci95``, ``{sim,imagined}_final_distance`` (m, achieved goal to goal, mean) and,
        with an object, ``{sim,imagined}_object_displacement``, ``per_episode`` rows; ``correlation.{pearson,
        spearman, mmrv}`` of success rates (imagined against simulated), ``return_{pearson,spearman}``,
        ``final_distance_pearson``, ``object_displacement_pearson`` and ``policies`` (the finished ones they
        use); ``disagreement.policies.<name>.{success_disagreements, largest_distance_gaps}`` (episode rows
        with ``video``: a path or ``None``), ``disagreement.videos``; ``fidelity`` and ``baseline``
        (repeat the first frame): lists over ``horizons`` 1..H of ``psnr``, ``ssim``, ``robot_st_iou`` and
        ``object_st_iou`` (ST-IoU over steps 1..h; the object only for ``push``), ``robot_iou``/``object_iou``
        (at step h), ``<name>_sem`` standard errors and ``count`` (replays reaching h); ``segmenter``
        (held-out IoUs, and the ST-IoU its masks reach on this evaluation's simulator frames: the ceiling);
        ``replay`` (sanity checks); ``config``; ``timing_seconds``; ``files``. An interrupted run, or one
        where every policy failed, has no fidelity sections.

    Raises:
        ValueError: A bad argument (unknown robot or task, a robot the model was not trained for, a policy
            that cannot be built, ...), before any episode runs.
        KeyboardInterrupt: Interrupted during the policy loop, after writing the partial report.
    """
    start, out_dir = time.perf_counter(), Path(out_dir)
    if policies is None:  # the task's family (an unknown task is refused here, naming the known ones)
        policies = task_spec(task).policy_family
    sources = named_sources(policies)
    EvaluateConfig(robot=robot, task=task, policies=tuple(sources), episodes=episodes, horizon=horizon,
                   seed=seed, max_steps=max_steps, camera=camera, num_inference_steps=num_inference_steps,
                   videos_per_policy=videos_per_policy, batch_size=batch_size,
                   disagreement_videos=disagreement_videos)  # fmt: skip  # validates every field
    run = _prepare(model_dir, robot, task, seed, episodes, max_steps, camera, num_inference_steps, device,
                   batch_size, progress)  # fmt: skip
    shipped = segmenter is None and segmenter_config is None and isinstance(model_dir, str)
    shipped = shipped and model_dir == "default"
    if shipped:
        from vap_env.model.loading import default_segmenter_path

        segmenter = default_segmenter_path()  # fitted with the default model's codec; None: fit one
        shipped = segmenter is not None
    given = _given_segmenter(segmenter, run)
    if shipped:  # the shipped one: a report names it so, not this machine's install path
        given = given[0], "default"
    timing: dict[str, float] = {}
    sim_env, state_env = run.sim_env(), run.sim_env("state")
    try:
        built = check_policies(sources, sim_env)
        outcome = _evaluate_policies(
            run, sources, built, (sim_env, state_env), timing, disagreement_videos, horizon
        )
    finally:
        sim_env.close()
        state_env.close()
    model, c = run.model, run.model.spec
    config = {
        "model": str(model_dir) if isinstance(model_dir, str | Path) else "<in-memory model>",
        "robot": run.robot, "task": task, "policies": list(sources), "episodes": episodes,
        "horizon": horizon, "max_steps": run.max_steps, "seed": seed, "seeds": run.seeds,
        "image_size": run.image_size, "camera": camera, "device": str(model.device), "prompt": c.prompt,
        "num_inference_steps": num_inference_steps or c.num_inference_steps,
        "context_frames": c.context_frames, "frames_per_step": c.frames_per_step,
        "segmenter_config": segmenter_config and asdict(segmenter_config),
        "disagreement_videos": disagreement_videos,
    }  # fmt: skip
    report = policy_report(sources, outcome.sim, outcome.imagined, outcome.status)
    report["config"] = config
    if outcome.interrupted or not outcome.sim:
        # stop here: no fidelity without finished policies, and a Ctrl-C asked to stop
        report["timing_seconds"] = {k: round(v, 2) for k, v in timing.items()}
        write_outputs(out_dir, report, [], 0, progress, started=start)
        if outcome.interrupted:
            raise KeyboardInterrupt(f"evaluation interrupted; partial report in {out_dir}")
        return report

    t = time.perf_counter()
    videos = write_disagreement_videos(out_dir, outcome.candidates.chosen(), outcome.video_episodes)
    report["disagreement"] = disagreement_section(outcome.sim, outcome.imagined, videos)
    timing["disagreement_videos"] = time.perf_counter() - t

    t = time.perf_counter()
    fitted, source = given or _fit_segmenter(run, segmenter_config, out_dir)
    timing["segmenter"] = time.perf_counter() - t

    t = time.perf_counter()
    sim_episodes = [e for name in outcome.sim for e in outcome.episodes[name]]
    replays, fidelity = _evaluate_fidelity(run, sim_episodes, fitted, horizon)
    timing["replay"] = time.perf_counter() - t

    report.update(_fidelity_report(fidelity, replays, horizon))
    report["segmenter"] = segmenter_report(fitted, source, fidelity)
    report["timing_seconds"] = {k: round(v, 2) for k, v in timing.items()}
    write_outputs(out_dir, report, replays, videos_per_policy, progress, started=start)
    return report


@dataclass
class _Run:
    """What every stage of one evaluation shares."""

    model: WorldModel
    robot: str
    task: str
    camera: str
    max_steps: int
    seeds: list[int]
    num_inference_steps: int | None
    device: str | torch.device | None
    batch_size: int
    progress: bool

    @property
    def image_size(self) -> int:
        return int(self.model.spec.image_size[0])

    def world_kwargs(self) -> dict[str, Any]:
        """Arguments of the world-model envs: starts from the simulator's first frame of each seed."""
        return dict(robot=self.robot, task=self.task, camera=self.camera, reset_mode="sim",
                    num_inference_steps=self.num_inference_steps, device=self.device)  # fmt: skip

    def vector_env(self, num_envs: int) -> WorldModelVectorEnv:
        return WorldModelVectorEnv(self.model, num_envs=num_envs, max_episode_steps=self.max_steps,
                                   obs_mode="both", **self.world_kwargs())  # fmt: skip

    def sim_env(self, obs_mode: str = "both") -> gym.Env:
        return gym.make(env_id(self.robot, self.task), obs_mode=obs_mode, image_size=self.image_size,
                        camera=self.camera, max_episode_steps=self.max_steps)  # fmt: skip


def _prepare(
    model_dir: str | Path | WorldModel,
    robot: str | None,
    task: str,
    seed: int,
    episodes: int,
    max_steps: int | None,
    camera: str,
    num_inference_steps: int | None,
    device: str | torch.device | None,
    batch_size: int,
    progress: bool,
) -> _Run:
    """Checks the robot, task and model against each other and the registry; loads the model."""
    spec = task_spec(task)  # names the known tasks
    arms = arm_robots()
    if robot is not None and robot not in arms:
        raise ValueError(f"unknown robot {robot!r}; robots with a simulated arm: {', '.join(arms)}")
    model = load_world_model(model_dir, device)
    trained_for = model.spec.robot
    if robot is not None and robot != trained_for:
        raise ValueError(
            f"the world model was trained for robot {trained_for!r}, not {robot!r}: pass a model trained "
            f"for {robot!r}, or robot={trained_for!r} (--robot {trained_for})"
        )
    if trained_for not in arms:
        raise ValueError(
            f"the world model is for {trained_for!r}, which has no simulated arm to compare with"
        )
    run = _Run(model=model, robot=trained_for, task=task, camera=camera,
               max_steps=max_steps or spec.max_episode_steps, seeds=[seed + k for k in range(episodes)],
               num_inference_steps=num_inference_steps, device=device, batch_size=batch_size,
               progress=progress)  # fmt: skip
    ImaginedWorld(model, obs_mode="both", **run.world_kwargs()).close()  # frame size, prompts, state size
    return run


def _given_segmenter(
    segmenter: RobotSegmenter | str | Path | None, run: _Run
) -> tuple[RobotSegmenter, str] | None:
    """The given segmenter (or the one loaded from its directory), checked; ``None`` when one must be fit."""
    if segmenter is None:
        return None
    if isinstance(segmenter, RobotSegmenter):
        fitted, source = segmenter, "given"
    else:
        fitted, source = RobotSegmenter.load(segmenter), str(segmenter)
    _check_segmenter(fitted, run)
    return fitted, source


def _fit_segmenter(run: _Run, config: SegmenterConfig | None, out_dir: Path) -> tuple[RobotSegmenter, str]:
    """A new fit on fresh simulator episodes (other seeds), saved to ``out_dir/segmenter``."""
    fitted = fit_for_evaluation(run.robot, run.task, run.image_size, run.camera, config, run.progress,
                                run.model.codec)  # fmt: skip
    _check_segmenter(fitted, run)
    return fitted, str(fitted.save(out_dir / "segmenter"))


def _check_segmenter(fitted: RobotSegmenter, run: _Run) -> None:
    if fitted.image_size != run.image_size:
        raise ValueError(
            f"the segmenter was fitted on {fitted.image_size}px frames; the world model makes "
            f"{run.image_size}px frames: fit another (omit `segmenter`)"
        )


@dataclass
class _Outcome:
    """The policy loop's results: the finished policies' and what became of the others."""

    sim: dict[str, PolicyResult] = field(default_factory=dict)
    imagined: dict[str, PolicyResult] = field(default_factory=dict)
    episodes: dict[str, list[Episode]] = field(default_factory=dict)
    video_episodes: dict[str, list[Episode]] = field(default_factory=dict)
    status: dict[str, dict[str, str]] = field(default_factory=dict)
    candidates: CandidateFrames = field(default_factory=lambda: CandidateFrames(0))
    interrupted: bool = False


def _evaluate_policies(
    run: _Run,
    sources: Mapping[str, PolicySource],
    built: Mapping[str, Any],
    sim_envs: tuple[gym.Env, gym.Env],
    timing: dict[str, float],
    videos: int,
    horizon: int,
) -> _Outcome:
    """Every policy in the simulator (episodes kept for the replays) and in imagination.

    ``sim_envs`` is the simulator observing images and state (``obs_mode="both"``) and observing the state
    alone. A policy that does not read images (:func:`~vap_env.policies.base.reads_images`: the scripted
    experts, random actions) runs on the second, which renders only the first ``horizon + 1`` frames of each
    episode, what the open-loop replays score, and its episodes are kept cut to those frames; the episodes of
    its disagreement videos are run again in full at the end (``out.video_episodes``: the simulator and such
    a policy's noise are functions of the seed, so it is the same episode). Any other policy runs on the
    first and keeps its whole episodes, so that its videos show the scored episodes whatever the policy
    does between episodes.

    With ``videos``, each imagined batch captures its frames and ``out.candidates`` keeps those of the
    episodes that may get one of the ``videos`` disagreement videos (:class:`CandidateFrames`). A policy
    that raises is marked failed and the loop goes on; a ``KeyboardInterrupt`` ends it, marking the policy
    it hit ``interrupted`` and the rest ``not run``.
    """
    out = _Outcome(
        status={name: {"status": "not run"} for name in sources}, candidates=CandidateFrames(videos)
    )
    names = list(sources)
    for name in tqdm(names, desc="policies", unit="policy", disable=not run.progress):
        stage = "sim"
        try:
            t = time.perf_counter()
            # a policy that reads images keeps its whole episodes; the others' are cut (docstring)
            images = reads_images(built[name])
            env, frames = (sim_envs[0], None) if images else (sim_envs[1], horizon + 1)
            sim, recorded = run_sim(
                env, built[name], run.seeds, run.max_steps, run.progress, name, frames=frames
            )
            timing["sim"] = timing.get("sim", 0.0) + time.perf_counter() - t
            stage, t = "imagined", time.perf_counter()
            size = imagined_batch_size(sources[name], built[name], run.batch_size)
            keep = partial(out.candidates.add, name, sim) if videos else None
            imagined = run_imagined(run.vector_env, sources[name], run.seeds, run.max_steps, size, name,
                                    run.progress, capture=keep is not None, on_batch=keep)  # fmt: skip
            timing["imagined"] = timing.get("imagined", 0.0) + time.perf_counter() - t
        except KeyboardInterrupt:
            out.candidates.discard(name)
            out.status[name] = {"status": "interrupted"}
            out.interrupted = True
            break
        except Exception as error:  # noqa: BLE001 - one policy's failure must not lose the others
            out.candidates.discard(name)
            message = error_message(error)
            out.status[name] = {"status": "failed", "failed_in": stage, "error": message}
            logger.warning("policy %r failed in the %s: %s", name, WORLDS[stage], message)
            continue
        out.sim[name], out.imagined[name], out.episodes[name] = sim, imagined, recorded
        out.candidates.commit(name)
        out.status[name] = {"status": "ok"}
    if not out.interrupted:
        t = time.perf_counter()
        out.video_episodes = _video_episodes(run, out, built, sim_envs[0])
        timing["sim"] = timing.get("sim", 0.0) + time.perf_counter() - t
    return out


def _video_episodes(run: _Run, out: _Outcome, built: Mapping[str, Any], sim_env: gym.Env) -> dict[str, list]:
    """The whole simulator episodes of the chosen disagreement videos: the kept ones, or, where those were cut
    to the replay horizon (``extra["frames_of"]``), the episode run again from its seed with its policy."""
    full: dict[str, list[Episode]] = {}
    for name, chosen in out.candidates.chosen().items():
        kept = {int(e.seed): e for e in out.episodes[name]}
        seeds = [c.seed for c in chosen if "frames_of" in kept[c.seed].extra]
        again = {}
        if seeds:
            _, episodes = run_sim(sim_env, built[name], seeds, run.max_steps, False, name)
            again = dict(zip(seeds, episodes, strict=True))
        for seed, episode in again.items():
            if not np.array_equal(episode.frames[: kept[seed].num_frames], kept[seed].frames):
                logger.warning(
                    "policy %r, seed %d: its episode run again for the video differs from the scored one "
                    "(a policy whose actions are not a function of its reset seed); the video shows the rerun",
                    name,
                    seed,
                )
        full[name] = [again.get(c.seed, kept[c.seed]) for c in chosen]
    return full


def _evaluate_fidelity(
    run: _Run, episodes: list[Episode], segmenter: RobotSegmenter, horizon: int
) -> tuple[list[Replay], dict[str, dict]]:
    """Open-loop replays of the simulator's episodes and their per-horizon fidelity."""
    world = ImaginedWorld(run.model, obs_mode="image", **run.world_kwargs())
    try:
        replays = open_loop_replays(world, episodes, horizon, run.batch_size, run.progress)
    finally:
        world.close()
    curves = [fidelity_curves(r, segmenter, has_object=task_spec(run.task).has_object) for r in replays]
    return replays, aggregate_fidelity(curves, horizon)


def _fidelity_report(fidelity: dict[str, dict], replays: list[Replay], horizon: int) -> dict[str, Any]:
    return {
        "fidelity": {"horizons": list(range(1, horizon + 1)), **fidelity["model"]},
        "baseline": {
            "name": "repeat the first frame",
            "horizons": list(range(1, horizon + 1)),
            **fidelity["baseline"],
        },
        "replay": {
            "episodes": len(replays),
            "start_frames_identical": all(r.start_matches for r in replays),
            "max_command_error_rad": max((r.command_error for r in replays), default=0.0),
        },
    }
