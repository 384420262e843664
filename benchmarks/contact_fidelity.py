"""Does the imagined cube move as the simulator's does? Open-loop contact fidelity on held-out push episodes.

Each model replays every held-out episode's actions open loop from its first frame (never seeing another
simulator frame), as ``benchmarks/heldout_fidelity.py`` does, and is scored beside the repeat-the-first-frame
baseline on the figures of the issue "Imagined contact":

- on *contact windows*, where the cube moves at least ``--moved`` m (default 2 cm) within ``--horizon``
  steps: the imagined cube's centre error at that horizon (the detector's table position, as the imagined
  env's reward reads it), object and robot ST-IoU, and how far the imagined cube moved at all. A push
  reaches the cube only after its approach (with the workspace camera at 128x128, no held-out episode moved
  it 2 cm within its first 16 steps), so these replays start ``--lead`` steps (default 4) before each
  episode's cube starts to move, from that recorded frame and command (``reset_mode="image"``);
- over all episodes replayed from their first frame (where the cube mostly rests): object ST-IoU, robot
  ST-IoU and PSNR per horizon.

The robot ST-IoU needs a segmenter for the data's image size and camera: ``--segmenter DIR`` (fitted here
on fresh simulator episodes and saved there when DIR does not exist yet: about a minute at 64x64, several at
128x128). The episodes' robot description must be the one they were
recorded with (its camera included): their seeds must reproduce their first frames (``start_matches``).

    python benchmarks/contact_fidelity.py --models default --data data/panda_push_heldout \\
        --json docs/results/contact_fidelity.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vap_env.data import EpisodeDataset
from vap_env.envs.imagined_world import ImaginedWorld
from vap_env.evaluate.comparison import camera_mode
from vap_env.evaluate.replay import (
    Replay,
    fidelity_curves,
    object_centre_errors,
    open_loop_replays,
    travel_along_push,
)
from vap_env.evaluate.report import replay_frames, slug, write_benchmark, write_png, write_video
from vap_env.evaluate.segmenter import RobotSegmenter, fit_for_evaluation
from vap_env.model.loading import default_model_path, load_world_model

HORIZONS = (1, 4, 8, 16)


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if np.isfinite(v)]
    return round(float(np.mean(values)), 4) if values else None


def contact_windows(episodes: list, horizon: int, moved: float, lead: int) -> list:
    """Windows of ``horizon`` steps that start ``lead`` steps before each episode's cube starts to move
    (5 mm from its start), kept where it then moves at least ``moved`` m (:meth:`Episode.starting_at`)."""
    windows = []
    for e in episodes:
        travel = np.linalg.norm(e.object_poses[:, :2] - e.object_poses[0, :2], axis=1)
        if len(e.actions) < horizon or not (travel >= 0.005).any():
            continue
        start = max(0, min(int(np.argmax(travel >= 0.005)) - lead, len(e.actions) - horizon))
        window = e.starting_at(start)
        if np.linalg.norm(window.object_poses[horizon, :2] - window.object_poses[0, :2]) >= moved:
            windows.append(window)
    return windows


def score(
    model, episodes: list, segmenter: RobotSegmenter, horizon: int, moved: float, lead: int,
    **sampling: object,
) -> tuple[dict, list[Replay], list[dict]]:  # fmt: skip
    """The figures of one model on ``episodes`` (see the module docstring), and the replays of the
    contact windows and their cube tracks (for videos and plots). ``sampling``: ``num_inference_steps`` and
    ``guidance_scale`` of the imagined world."""
    first = episodes[0]
    common = dict(robot=first.robot, task=first.task, camera=camera_mode(episodes), obs_mode="image",
                  action_mode=first.action_mode, **sampling)  # fmt: skip
    windows = contact_windows(episodes, horizon, moved, lead)
    world = ImaginedWorld(model, reset_mode="sim", **common)
    window_world = ImaginedWorld(world.model, reset_mode="image", **common)
    try:
        replays = open_loop_replays(world, episodes, horizon, batch_size=16, progress=True)
        centres = [object_centre_errors(r, world.detector, world.object_region) for r in replays]
        contact = open_loop_replays(window_world, windows, horizon, batch_size=16, progress=True)
        contact_centres = [object_centre_errors(r, world.detector, world.object_region) for r in contact]
    finally:
        world.close()
        window_world.close()
    curves = [fidelity_curves(r, segmenter, has_object=True) for r in replays]
    contact_curves = [fidelity_curves(r, segmenter, has_object=True) for r in contact]
    full = [i for i, r in enumerate(replays) if len(r.imagined) >= horizon]
    h = horizon - 1

    def at(curve_list: list, ids: list[int], world_name: str, name: str, step: int) -> float | None:
        return _mean([curve_list[i][world_name][name][step] for i in ids])

    ids = list(range(len(contact)))
    travels = [travel_along_push(c, min(horizon, len(c["track"]) - 1)) for c in contact_centres]
    out: dict = {
        "episodes": len(replays),
        "start_matches": float(np.mean([r.start_matches for r in replays])),
        "moved_from_start": sum(centres[i]["displacement"][h] >= moved for i in full),
        "moved_episodes": len(contact),
        "moved": {
            "start_step": _mean([float(w.extra["start_step"]) for w in windows]),
            "centre_error_m": {
                "model": _mean([c["model"][h] for c in contact_centres]),
                "baseline": _mean([c["baseline"][h] for c in contact_centres]),
            },
            "object_st_iou": {
                w: at(contact_curves, ids, w, "object_st_iou", h) for w in ("model", "baseline")
            },
            "robot_st_iou": {w: at(contact_curves, ids, w, "robot_st_iou", h) for w in ("model", "baseline")},
            "cube_found": _mean([float(c["found"][h]) for c in contact_centres]),
            "true_displacement_m": _mean([c["displacement"][h] for c in contact_centres]),
            "imagined_displacement_m": _mean(
                [_imagined_travel(r, world.detector, world.object_region, h) for r in contact]
            ),
            # the env's imagined cube (last found place) against the simulator's push: under-travel or a
            # wrong direction
            "along_push_share": _mean([t["along_m"] / t["true_m"] for t in travels if t["true_m"] > 0]),
            "off_push_m": _mean([t["off_m"] for t in travels]),
        },
        "all": {},
    }
    for step in HORIZONS:
        if step > horizon:
            continue
        ids = [i for i, r in enumerate(replays) if len(r.imagined) >= step]
        out["all"][str(step)] = {
            name: {w: at(curves, ids, w, name, step - 1) for w in ("model", "baseline")}
            for name in ("psnr", "object_st_iou", "robot_st_iou")
        } | {
            "centre_error_m": {
                "model": _mean([centres[i]["model"][step - 1] for i in ids]),
                "baseline": _mean([centres[i]["baseline"][step - 1] for i in ids]),
            }
        }
    return out, contact, contact_centres


def _imagined_travel(replay: Replay, detector, region, step: int) -> float:
    """How far the detected cube moved in the imagined frames from the start frame to ``step`` (m; nan if
    either frame shows none): does the imagined cube move at all, whatever the direction."""
    e = replay.episode
    start = detector.detect(e.frames[0], e.camera, region)
    end = detector.detect(replay.imagined[step], e.camera, region)
    if start is None or end is None:
        return float("nan")
    return float(np.linalg.norm(end.position[:2] - start.position[:2]))


def write_tracks(path: Path, tracks: dict[str, list[dict]], windows: list) -> None:
    """One panel per contact window: the simulator's cube track on the table (black) and each model's
    imagined one (as the env reads it), the start marked; axes in cm from the true start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(windows)
    cols = min(6, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        origin = None
        for k, (name, model_tracks) in enumerate(tracks.items()):
            c = model_tracks[i]
            origin = c["true_track"][0] if origin is None else origin
            if k == 0:
                t = (c["true_track"] - origin) * 100
                ax.plot(t[:, 0], t[:, 1], "k.-", lw=1.5, ms=3, label="simulator")
            m = (c["track"] - origin) * 100
            ax.plot(m[:, 0], m[:, 1], ".-", lw=1, ms=3, label=name)
        ax.plot(0, 0, "ko", ms=4)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"{windows[i].policy[:22]} s{windows[i].seed}", fontsize=7)
        ax.tick_params(labelsize=6)
    axes.flat[0].legend(fontsize=6)
    fig.suptitle("cube on the table (cm from its start): simulator and imagined, contact windows", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_moved_videos(out_dir: Path, replays: list[Replay]) -> list[str]:
    """One side-by-side video (simulator | imagined | prompt) per moved-cube replay, and a contact sheet
    ``moved.png``: every replay's frame at the horizon, stacked, to look at without a player."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written, sheet = [], []
    for replay in replays:
        frames = replay_frames(replay)
        name = f"{slug(replay.episode.policy)}_seed{replay.episode.seed}.mp4"
        write_video(out_dir / name, frames)
        written.append(name)
        sheet.append(frames[-1])
    if sheet:
        write_png(out_dir / "moved.png", np.concatenate(sheet, axis=0))
    return written


def markdown(results: dict) -> str:
    lines = []
    for name, r in results["models"].items():
        m, h = r["moved"], results["horizon"]
        lines += [
            f"{name}: {r['episodes']} episodes replayed from their first frame ({r['moved_from_start']} with "
            f"the cube moved >= {results['moved_m'] * 100:.0f} cm by step {h}), start matches "
            f"{r['start_matches']:.2f}; {r['moved_episodes']} contact windows of {h} steps from "
            f"{results['lead']} steps before the cube starts to move (mean start step {_f(m['start_step'])}; "
            f"the cube moves {_cm(m['true_displacement_m'])} cm in the simulator, "
            f"{_cm(m['imagined_displacement_m'])} cm in imagination)",
            "",
            "| subset | figure | model | repeat baseline |",
            "|---|---|---|---|",
            f"| contact windows | centre error at {h} (cm) | {_cm(m['centre_error_m']['model'])} | "
            f"{_cm(m['centre_error_m']['baseline'])} |",
            f"| contact windows | object ST-IoU at {h} | {_f(m['object_st_iou']['model'])} | "
            f"{_f(m['object_st_iou']['baseline'])} |",
            f"| contact windows | robot ST-IoU at {h} | {_f(m['robot_st_iou']['model'])} | "
            f"{_f(m['robot_st_iou']['baseline'])} |",
            f"| contact windows | imagined travel along the push / the true travel | "
            f"{_f(m.get('along_push_share'))} | 0 |",
            f"| contact windows | imagined travel across the push (cm) | {_cm(m.get('off_push_m'))} | 0 |",
        ]
        for step, row in r["all"].items():
            for figure in ("psnr", "object_st_iou", "robot_st_iou"):
                lines.append(f"| all | {figure} at {step} | {_f(row[figure]['model'])} | "
                             f"{_f(row[figure]['baseline'])} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _cm(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["default"], help="saved models; default: default")
    p.add_argument("--data", type=Path, required=True, help="held-out push episodes (`vap-env collect`)")
    p.add_argument("--segmenter", type=Path, help="robot segmenter directory: loaded if it exists, else "
                   "fitted here and saved there; default: fit one here, unsaved")  # fmt: skip
    p.add_argument("--horizon", type=int, default=16, help="steps replayed; default: 16")
    p.add_argument("--moved", type=float, default=0.02, help="cube displacement (m) of the moved subset")
    p.add_argument("--lead", type=int, default=4, help="contact windows start this many steps before the "
                   "cube starts to move; default: 4")  # fmt: skip
    p.add_argument("--episodes", type=int, help="only the first N episodes; default: all")
    p.add_argument("--json", type=Path, required=True, help="where the figures go")
    p.add_argument("--seed", type=int, default=0, help="sampling noise seed; default: 0")
    p.add_argument("--steps", type=int, help="denoising steps; default: each model's own")
    p.add_argument("--guidance-scale", type=float, default=1.0,
                   help="classifier-free guidance over the prompt (1 = off); default: 1")  # fmt: skip
    p.add_argument(
        "--tracks",
        type=Path,
        help="plot every contact window's cube track (simulator and each model) to this PNG",
    )
    p.add_argument("--videos", type=Path, help="write side-by-side videos of the moved-cube replays here, "
                   "one folder per model")  # fmt: skip
    args = p.parse_args()

    dataset = EpisodeDataset(args.data)
    if dataset.task != "push":
        raise SystemExit(f"{args.data} holds {dataset.task!r} episodes: contact fidelity needs push")
    episodes = [dataset[i] for i in range(min(len(dataset), args.episodes or len(dataset)))]
    models = {name: load_world_model(name) for name in args.models}
    if args.segmenter and args.segmenter.exists():
        segmenter = RobotSegmenter.load(args.segmenter)
    else:
        first_model = next(iter(models.values()))
        segmenter = fit_for_evaluation(
            dataset.robot, "push", dataset.image_size[0], camera_mode(episodes), progress=True,
            codec=first_model.codec,
        )  # fmt: skip
        if args.segmenter:  # fitting takes minutes at 128x128: keep it for the next run
            segmenter.save(args.segmenter)
    results: dict = {"data": str(args.data), "horizon": args.horizon, "moved_m": args.moved, "models": {},
                     "lead": args.lead,
                     "num_inference_steps": args.steps, "guidance_scale": args.guidance_scale}  # fmt: skip
    results["segmenter_heldout_iou"] = segmenter.info.get("heldout_iou")
    tracks: dict[str, list[dict]] = {}
    moved_replays: list[Replay] = []
    for name, model in models.items():
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        results["models"][name], moved_replays, tracks[name] = score(
            model, episodes, segmenter, args.horizon, args.moved, args.lead,
            num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
        )  # fmt: skip
        results["models"][name]["path"] = str(default_model_path() if name == "default" else name)
        results["models"][name]["seconds"] = round(time.perf_counter() - start, 1)
        if args.videos:
            # a run's model is OUT/model: name the folder after the run, so that two runs do not share one
            parts = Path(name).parts[-2:] if Path(name).name == "model" else Path(name).parts[-1:]
            folder = args.videos / slug(name if name == "default" else "_".join(parts))
            results["models"][name]["videos"] = [
                str(folder / v) for v in write_moved_videos(folder, moved_replays)
            ]
    if args.tracks and moved_replays:
        write_tracks(args.tracks, tracks, [r.episode for r in moved_replays])
    write_benchmark(args.json, results, markdown)


if __name__ == "__main__":
    main()
