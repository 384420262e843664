"""Policy evaluation in imagination against the simulator, and open-loop fidelity: :func:`evaluate`.

From the same seeded initial states every policy of a family runs in the PyBullet simulator (``SimEnv``) and
in the world model (:class:`~vap_env.envs.vector_env.WorldModelVectorEnv`, all episodes of a policy in one
batch); a world model is useful for policy evaluation when it ranks the policies as the simulator does
(Pearson, Spearman, MMRV of success rates). The simulator's episodes are then replayed open loop in
imagination (:mod:`vap_env.evaluate.replay`) for per-horizon fidelity against the repeat-first-frame
baseline. :mod:`vap_env.evaluate.report` writes the results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
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
from vap_env.evaluate.metrics import mmrv, pearson, spearman
from vap_env.evaluate.replay import Replay, aggregate_fidelity, fidelity_curves, open_loop_replays
from vap_env.evaluate.report import write_outputs
from vap_env.evaluate.segmenter import RobotSegmenter, SegmenterConfig, fit_for_evaluation
from vap_env.model.protocol import WorldModel
from vap_env.policies import make_policy
from vap_env.recording import record_episode
from vap_env.sim.registration import env_id
from vap_env.tasks import task_spec


@dataclass
class PolicyResult:
    """Outcome of one policy's episodes in one world.

    Attributes:
        success: ``(N,)`` bool, solved at some step.
        returns: ``(N,)`` summed rewards.
        lengths: ``(N,)`` steps taken.
    """

    success: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray


class _SubEnvView:
    """What ``make_policy`` reads from an env, for one sub-env of a vector env (single spaces)."""

    def __init__(self, venv: WorldModelVectorEnv) -> None:
        self.action_space, self.observation_space = venv.single_action_space, venv.single_observation_space
        self.interface = venv.interface

    @property
    def unwrapped(self) -> _SubEnvView:
        return self


def _row(obs: Any, i: int) -> Any:
    return {k: v[i] for k, v in obs.items()} if isinstance(obs, dict) else obs[i]


def run_imagined(
    make_env: Callable[[int], WorldModelVectorEnv],
    spec: str,
    seeds: list[int],
    max_steps: int,
    batch_size: int = 16,
    progress: bool = False,
) -> PolicyResult:
    """Runs policy ``spec`` from each seed's initial state in imagination, ``batch_size`` episodes at once.

    Args:
        make_env: ``num_envs -> WorldModelVectorEnv`` (``obs_mode="both"``, ``reset_mode="sim"``, truncating
            at ``max_steps``); called once per batch size needed.
        spec: The policy spec; one policy instance per episode, reset with the episode's seed.
        seeds: Reset seeds of the episodes.
        max_steps: The episode length limit.
        batch_size: Sub-envs per vector env.
        progress: Show a progress bar over the steps.
    """
    envs: dict[int, WorldModelVectorEnv] = {}
    results = []
    try:
        for start in range(0, len(seeds), batch_size):
            chunk = seeds[start : start + batch_size]
            if len(chunk) not in envs:
                envs[len(chunk)] = make_env(len(chunk))
            bar = tqdm(
                total=max_steps, desc=f"imagined {spec}", unit="step", disable=not progress, leave=False
            )
            with bar:
                results.append(_run_batch(envs[len(chunk)], spec, chunk, max_steps, bar.update))
    finally:
        for env in envs.values():
            env.close()
    return PolicyResult(
        *(np.concatenate([getattr(r, f) for r in results]) for f in ("success", "returns", "lengths"))
    )


def _run_batch(
    venv: WorldModelVectorEnv, spec: str, seeds: list[int], max_steps: int, tick: Callable[[], object]
) -> PolicyResult:
    n, view = len(seeds), _SubEnvView(venv)
    policies = [make_policy(spec, view) for _ in seeds]
    obs, info = venv.reset(seed=list(seeds))
    for policy, seed in zip(policies, seeds, strict=True):
        policy.reset(seed=seed)
    success = np.asarray(info.get("is_success", np.zeros(n)), dtype=bool).copy()
    returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    idle = np.zeros(venv.single_action_space.shape, dtype=np.float32)
    for _ in range(max_steps):
        # finished sub-envs were autoreset (same-step); they take no-op steps until the batch ends
        actions = np.stack([policies[i].act(_row(obs, i)) if active[i] else idle for i in range(n)])
        obs, reward, terminated, truncated, info = venv.step(actions)
        returns += np.where(active, reward, 0.0)
        lengths += active
        success |= active & terminated
        active &= ~(terminated | truncated)
        tick()
        if not active.any():
            break
    return PolicyResult(success, returns, lengths)


def run_sim(
    env: gym.Env,
    spec: str,
    seeds: list[int],
    max_steps: int,
    progress: bool = False,
) -> tuple[PolicyResult, list[Episode]]:
    """Runs policy ``spec`` in the simulator from each seed; returns its results and recorded episodes."""
    policy = make_policy(spec, env)
    episodes = [
        record_episode(env, policy, seed, spec, max_steps=max_steps)
        for seed in tqdm(seeds, desc=f"sim {spec}", unit="ep", disable=not progress, leave=False)
    ]
    result = PolicyResult(
        np.array([e.success for e in episodes]),
        np.array([e.rewards.sum() for e in episodes]),
        np.array([len(e.actions) for e in episodes]),
    )
    return result, episodes


def _correlations(sim: list[float], imagined: list[float]) -> dict[str, float]:
    return {
        "pearson": pearson(imagined, sim),
        "spearman": spearman(imagined, sim),
        "mmrv": mmrv(imagined, sim),
    }


def _load_segmenter(
    segmenter: RobotSegmenter | str | Path | None, run: _Run, config: SegmenterConfig | None, out_dir: Path
) -> tuple[RobotSegmenter, str]:
    """The given segmenter, one loaded from a directory, or a new fit (saved to ``out_dir/segmenter``)."""
    if isinstance(segmenter, RobotSegmenter):
        fitted, source = segmenter, "given"
    elif segmenter is not None:
        fitted, source = RobotSegmenter.load(segmenter), str(segmenter)
    else:
        fitted = fit_for_evaluation(
            run.robot, run.task, run.image_size, run.camera, config, run.progress, run.model.codec
        )
        source = str(fitted.save(out_dir / "segmenter"))
    if fitted.image_size != run.image_size:
        raise ValueError(
            f"the segmenter was fitted on {fitted.image_size}px frames; the world model makes "
            f"{run.image_size}px frames: fit another (omit `segmenter`)"
        )
    return fitted, source


def evaluate(
    model_dir: str | Path | WorldModel,
    robot: str | None = EvaluateConfig.robot,
    task: str = EvaluateConfig.task,
    policies: list[str] | tuple[str, ...] = EvaluateConfig.policies,
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
) -> dict[str, Any]:
    """Evaluates a world model for policy evaluation and open-loop fidelity against the simulator.

    Episode ``k`` of every policy starts from the initial state of seed ``seed + k`` in both worlds, and the
    policy's own randomness is reseeded with it, so both worlds see the same policy noise.

    Args:
        model_dir: A ``save_pretrained`` directory (or a ``vap-env train`` output), ``"default"``, or a model.
        robot: Checked against the model's robot (``None``: the model's).
        task: ``"push"`` or ``"reach"``.
        policies: Policy specs (``vap_env.policies.make_policy``); at least two for correlations.
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
        videos_per_policy: Side-by-side replay videos written per policy.
        batch_size: Episodes imagined together.

    Returns:
        The report, also written to ``out_dir/report.json`` (NaN, e.g. a correlation of constant rates, as
        ``null``): ``policies.<spec>.{sim,imagined}_{success,return,length}``; ``correlation.{pearson,
        spearman, mmrv}`` of success rates (imagined against simulated) and ``return_{pearson,spearman}``;
        ``fidelity`` and ``baseline`` (repeat the first frame): lists over ``horizons`` 1..H of ``psnr``,
        ``ssim``, ``robot_st_iou`` and ``object_st_iou`` (ST-IoU over steps 1..h; the object only for
        ``push``), ``robot_iou``/``object_iou`` (at step h), ``<name>_sem`` standard errors and ``count``
        (replays reaching h); ``segmenter`` (held-out IoUs, and the ST-IoU its masks reach on this
        evaluation's simulator frames: the ceiling); ``replay`` (sanity checks); ``config``;
        ``timing_seconds``; ``files``.
    """
    if episodes < 1 or horizon < 1:
        raise ValueError(f"`episodes` and `horizon` must be >= 1, got {episodes} and {horizon}")
    if not policies:
        raise ValueError("`policies` must name at least one policy spec")
    start, out_dir = time.perf_counter(), Path(out_dir)
    model = load_world_model(model_dir, device)
    run = _Run(model=model, robot=robot or model.spec.robot, task=task, camera=camera,
               max_steps=max_steps or task_spec(task).max_episode_steps, seeds=[seed + k for k in range(episodes)],
               num_inference_steps=num_inference_steps, device=device, batch_size=batch_size,
               progress=progress)  # fmt: skip
    timing: dict[str, float] = {}
    sim_results, imagined_results, sim_episodes = _evaluate_policies(run, policies, timing)

    t = time.perf_counter()
    if (
        segmenter is None
        and segmenter_config is None
        and isinstance(model_dir, str)
        and model_dir == "default"
    ):
        from vap_env.model.loading import default_segmenter_path

        segmenter = default_segmenter_path()  # fitted with the default model's codec; None: fit one
    fitted, source = _load_segmenter(segmenter, run, segmenter_config, out_dir)
    timing["segmenter"] = time.perf_counter() - t

    t = time.perf_counter()
    replays, fidelity = _evaluate_fidelity(run, sim_episodes, fitted, horizon)
    timing["replay"] = time.perf_counter() - t

    report = _report(policies, sim_results, imagined_results, fidelity, replays, horizon)
    heldout = ("heldout_iou", "heldout_iou_degraded", "heldout_iou_codec", "heldout_frame_iou",
               "train_frames", "heldout_frames", "codec_augmented")  # fmt: skip
    report["segmenter"] = {
        **{k: fitted.info.get(k) for k in heldout},
        "source": source,
        "robot_st_iou_on_sim_frames": fidelity["segmenter"].get("robot_st_iou"),
        "object_st_iou_on_sim_frames": fidelity["segmenter"].get("object_st_iou"),
    }
    c = model.spec
    report["config"] = {
        "model": str(model_dir) if isinstance(model_dir, str | Path) else "<in-memory model>",
        "robot": run.robot, "task": task, "policies": list(policies), "episodes": episodes,
        "horizon": horizon, "max_steps": run.max_steps, "seed": seed, "seeds": run.seeds,
        "image_size": run.image_size, "camera": camera, "device": str(model.device), "prompt": c.prompt,
        "num_inference_steps": num_inference_steps or c.num_inference_steps,
        "context_frames": c.context_frames, "frames_per_step": c.frames_per_step,
        "segmenter_config": segmenter_config and asdict(segmenter_config),
    }  # fmt: skip
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


def _evaluate_policies(
    run: _Run, policies: list[str] | tuple[str, ...], timing: dict[str, float]
) -> tuple[dict[str, PolicyResult], dict[str, PolicyResult], list[Episode]]:
    """Every policy in the simulator (episodes kept for the replays) and in imagination."""
    sim_env = gym.make(env_id(run.robot, run.task), obs_mode="both", image_size=run.image_size,
                       camera=run.camera, max_episode_steps=run.max_steps)  # fmt: skip
    sim_results, imagined_results, sim_episodes = {}, {}, []
    try:
        for spec in tqdm(policies, desc="policies", unit="policy", disable=not run.progress):
            t = time.perf_counter()
            sim_results[spec], recorded = run_sim(sim_env, spec, run.seeds, run.max_steps, run.progress)
            sim_episodes += recorded
            timing["sim"] = timing.get("sim", 0.0) + time.perf_counter() - t
            t = time.perf_counter()
            imagined_results[spec] = run_imagined(
                run.vector_env, spec, run.seeds, run.max_steps, run.batch_size, run.progress
            )
            timing["imagined"] = timing.get("imagined", 0.0) + time.perf_counter() - t
    finally:
        sim_env.close()
    return sim_results, imagined_results, sim_episodes


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


def _report(
    policies: list[str] | tuple[str, ...],
    sim: dict[str, PolicyResult],
    imagined: dict[str, PolicyResult],
    fidelity: dict[str, dict],
    replays: list,
    horizon: int,
) -> dict[str, Any]:
    per_policy = {
        spec: {
            "sim_success": float(sim[spec].success.mean()),
            "imagined_success": float(imagined[spec].success.mean()),
            "sim_return": float(sim[spec].returns.mean()),
            "imagined_return": float(imagined[spec].returns.mean()),
            "sim_length": float(sim[spec].lengths.mean()),
            "imagined_length": float(imagined[spec].lengths.mean()),
            "episodes": len(sim[spec].success),
        }
        for spec in policies
    }
    rates = {
        k: [per_policy[s][k] for s in policies]
        for k in ("sim_success", "imagined_success", "sim_return", "imagined_return")
    }
    success = _correlations(rates["sim_success"], rates["imagined_success"])
    returns = _correlations(rates["sim_return"], rates["imagined_return"])
    return {
        "policies": per_policy,
        "correlation": {
            **success,
            "return_pearson": returns["pearson"],
            "return_spearman": returns["spearman"],
        },
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
