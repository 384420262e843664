"""Open-loop replays of simulator episodes in imagination, and their per-horizon fidelity.

An open-loop replay starts the world model from the simulator's first frame of an episode (same seed) and
feeds it the episode's actions, one step at a time, never showing it another simulator frame: the error at
horizon ``h`` is what ``h`` steps of imagination accumulate. Frames are compared with the simulator's at the
same step by PSNR, SSIM and the ST-IoU of robot and object masks (the robot's from a segmenter fitted on
simulator frames, the cube's from the red-cube detector); the repeat-the-first-frame baseline is scored the
same way, since whole-frame PSNR mostly measures the static background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium.utils import seeding
from tqdm.auto import tqdm

from vap_env.data import Episode
from vap_env.envs.estimation import CubeDetector
from vap_env.envs.imagined_world import ImaginedEpisode, ImaginedWorld
from vap_env.evaluate.image_metrics import ssim
from vap_env.evaluate.metrics import capped_psnr, frame_iou, horizon_mean, st_iou_curve
from vap_env.evaluate.segmenter import RobotSegmenter

CURVES = ("psnr", "ssim", "robot_st_iou", "object_st_iou", "robot_iou", "object_iou")


@dataclass
class Replay:
    """One open-loop replay.

    Attributes:
        episode: The simulator episode replayed.
        imagined: ``(L, H, W, 3)`` uint8 generated frames for steps ``1..L`` (``L = min(H, actions)``).
        prompts: ``(L + 1, H, W, 3)`` uint8 prompts the model was given (step 0 = the start frame's).
        start_matches: Whether the imagined episode started from exactly the simulator's first frame.
        command_error: Largest joint difference (rad) between the imagined and simulated commanded states.
    """

    episode: Episode
    imagined: np.ndarray
    prompts: np.ndarray
    start_matches: bool
    command_error: float


def open_loop_replays(
    world: ImaginedWorld, episodes: list[Episode], horizon: int, batch_size: int = 32, progress: bool = False
) -> list[Replay]:
    """Replays each episode's first ``horizon`` actions in imagination, batching episodes together.

    Args:
        world: The imagined world (the episodes' task, camera and image size): ``reset_mode="sim"`` starts
            each replay from its episode's seed (the simulator's first frame, reproduced), ``"image"`` from
            the episode's first recorded frame, command and goal (for windows that start later:
            :meth:`Episode.starting_at`).
        episodes: Simulator episodes (their ``seed`` restarts the same initial state).
        horizon: Steps to replay; shorter episodes replay all their actions.
        batch_size: Episodes generated together.
        progress: Show a progress bar.
    """
    replays: list[Replay] = []
    chunks = [episodes[i : i + batch_size] for i in range(0, len(episodes), batch_size)]
    bar = tqdm(
        total=sum(min(horizon, len(e.actions)) for e in episodes),
        desc="open-loop replay",
        unit="frame",
        disable=not progress,
    )
    for chunk in chunks:
        states = [_start(world, e) for e in chunk]
        lengths = [min(horizon, len(e.actions)) for e in chunk]
        starts = [bool(np.array_equal(s.frames[-1], e.frames[0])) for s, e in zip(states, chunk, strict=True)]
        frames = [[] for _ in chunk]
        # the prompt as an image (for ``state`` prompts the world draws the skeleton instead)
        prompts = [[world.render(s, "prompt")] for s in states]
        errors = [0.0] * len(chunk)
        for t in range(max(lengths, default=0)):
            active = [i for i, n in enumerate(lengths) if t < n]
            world.advance([states[i] for i in active], np.stack([chunk[i].actions[t] for i in active]))
            for i in active:
                frames[i].append(states[i].frames[-1].copy())
                prompts[i].append(world.render(states[i], "prompt"))
                gap = np.abs(states[i].command.joints - chunk[i].commanded_joints[t + 1]).max()
                errors[i] = max(errors[i], float(gap))
            bar.update(len(active))
        for i, e in enumerate(chunk):
            h, w = e.image_size
            imagined = np.stack(frames[i]) if frames[i] else np.zeros((0, h, w, 3), np.uint8)
            replays.append(Replay(e, imagined, np.stack(prompts[i]), starts[i], errors[i]))
    bar.close()
    return replays


def fidelity_curves(replay: Replay, segmenter: RobotSegmenter, has_object: bool) -> dict[str, dict]:
    """Per-horizon metrics of one replay for the model, the baseline and the segmenter on true frames.

    Returns:
        ``{"model": curves, "baseline": curves, "segmenter": curves}``; each maps a name of :data:`CURVES`
        to an ``(L,)`` array (entry ``h - 1`` = horizon ``h``; ST-IoU over frames ``1..h``, IoU at frame
        ``h``). Object curves are absent without an object. ``segmenter`` scores the masks read from the
        *simulator's* frames: about what a perfect generation would score (the segmenter's own error).
    """
    e, n = replay.episode, len(replay.imagined)
    true = e.frames[1 : n + 1]
    candidates = {"model": replay.imagined, "baseline": np.repeat(e.frames[:1], n, axis=0)}
    out: dict[str, dict] = {}
    for name, frames in candidates.items():
        curves = (
            {"psnr": capped_psnr(frames, true), "ssim": np.atleast_1d(ssim(frames, true))}
            if n
            else {"psnr": np.zeros(0), "ssim": np.zeros(0)}
        )
        curves.update(_mask_curves(segmenter, frames, e, n, has_object))
        out[name] = curves
    out["segmenter"] = _mask_curves(segmenter, true, e, n, has_object)
    return out


def _mask_curves(
    segmenter: RobotSegmenter, frames: np.ndarray, e: Episode, n: int, has_object: bool
) -> dict[str, np.ndarray]:
    if n == 0:
        return {}
    pred = segmenter.robot_masks(frames)
    true = e.robot_mask[1 : n + 1]
    curves = {"robot_st_iou": st_iou_curve(pred, true), "robot_iou": frame_iou(pred, true)}
    if has_object:
        pred_obj, true_obj = segmenter.object_masks(frames), e.object_mask[1 : n + 1]
        curves.update(
            object_st_iou=st_iou_curve(pred_obj, true_obj), object_iou=frame_iou(pred_obj, true_obj)
        )
    return curves


def aggregate_fidelity(per_replay: list[dict[str, dict]], horizon: int) -> dict[str, dict]:
    """Means over replays, horizon by horizon: ``{"model"|"baseline"|"segmenter": {name: list, name_sem:
    list, "count": list}}`` with NaN where no replay reached a horizon."""
    out: dict[str, dict] = {}
    for world in ("model", "baseline", "segmenter"):
        table: dict[str, list] = {}
        for name in CURVES:
            curves = [r[world][name] for r in per_replay if name in r[world]]
            if not curves:
                continue
            stats = horizon_mean(curves, horizon)
            table[name], table[f"{name}_sem"] = stats["mean"].tolist(), stats["sem"].tolist()
            table["count"] = stats["count"].tolist()
        out[world] = table
    return out


def _start(world: ImaginedWorld, episode: Episode) -> ImaginedEpisode:
    """The imagined episode a replay of ``episode`` starts from (see :func:`open_loop_replays`)."""
    np_random = seeding.np_random(episode.seed)[0]
    if world.config.reset_mode != "image":
        return world.new_episode(np_random, episode.seed)
    options = {
        "image": episode.frames[0],
        "joints": episode.commanded_joints[0],
        "gripper": float(episode.commanded_gripper[0]),
        "goal": episode.goal,
        "camera": episode.camera,
    }
    return world.new_episode(np_random, episode.seed, options)


def object_centre_errors(
    replay: Replay,
    detector: CubeDetector,
    region: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """How far the imagined cube is from the simulator's, horizon by horizon, beside the repeat baseline.

    The imagined cube's centre is what the imagined env's reward reads: the detector's position on the table
    in each generated frame, the last found one where it finds none (as the env's estimator falls back), the
    first frame's detection before any. The baseline keeps the first frame's detection throughout, so its
    error is how far the cube truly moved (plus the detector's own error).

    Returns:
        ``model`` and ``baseline``: ``(L,)`` xy distances (m) to the true cube centre at steps ``1..L``;
        ``displacement``: ``(L,)`` xy distance the true cube has moved from its start by each step;
        ``found``: ``(L,)`` bool, whether the detector found a cube in the generated frame;
        ``true_track``: ``(L + 1, 2)`` the true cube's xy at steps ``0..L``; ``track``: ``(L + 1, 2)`` the
        imagined cube's as the env reads it (step 0: the first frame's detection).
    """
    e, n = replay.episode, len(replay.imagined)
    true = e.object_poses[: n + 1, :2].astype(np.float64)
    first = detector.detect(e.frames[0], e.camera, region)
    start = first.position[:2] if first is not None else true[0]
    last, imagined, found = start, [], []
    for frame in replay.imagined:
        detection = detector.detect(frame, e.camera, region)
        found.append(detection is not None)
        last = detection.position[:2] if detection is not None else last
        imagined.append(last)
    imagined = np.asarray(imagined, dtype=np.float64).reshape(n, 2)
    return {
        "model": np.linalg.norm(imagined - true[1:], axis=1),
        "baseline": np.linalg.norm(start[None] - true[1:], axis=1),
        "displacement": np.linalg.norm(true[1:] - true[0], axis=1),
        "found": np.asarray(found, dtype=bool),
        "true_track": true,
        "track": np.concatenate([np.asarray(start, dtype=np.float64).reshape(1, 2), imagined]),
    }


def travel_along_push(errors: dict[str, np.ndarray], step: int) -> dict[str, float]:
    """How the imagined cube travelled by ``step`` (1-based, as the curves' steps ``1..L``) against the
    simulator's push, from :func:`object_centre_errors`'s tracks: ``true_m``, how far the true cube moved;
    ``along_m``, the imagined cube's travel along the true cube's direction (negative: backwards);
    ``off_m``, its travel across that direction. Under-travel and a wrong direction are different failures.
    """
    true = errors["true_track"][step] - errors["true_track"][0]
    imagined = errors["track"][step] - errors["track"][0]
    distance = float(np.linalg.norm(true))
    if distance == 0.0:
        return {"true_m": 0.0, "along_m": 0.0, "off_m": float(np.linalg.norm(imagined))}
    unit = true / distance
    along = float(imagined @ unit)
    return {
        "true_m": distance,
        "along_m": along,
        "off_m": float(abs(imagined[0] * unit[1] - imagined[1] * unit[0])),
    }
