"""Where imagination and the simulator disagree: rates with intervals, per-episode outcomes, videos.

A ranking correlation over a handful of policies hides *how* the worlds differ. Per policy this module puts
the two success rates beside their 95% Wilson intervals and the interval of their difference, the mean final
distance of the achieved goal to the goal and (with an object) the cube's displacement in both worlds, and
picks the episodes to look at: every episode whose success the worlds disagree on, and the ``top`` episodes
with the largest final-distance gap. The worst few of them over all policies get a side-by-side video
(simulator | imagined, closed loop, same seed and policy); rather than keeping every imagined frame in
memory, the chosen imagined episodes are run again with frame capture, and the re-run is checked to
reproduce the recorded outcome (the simulator's frames are the recorded episode's, kept for the replays).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vap_env.data import Episode
from vap_env.evaluate.metrics import difference_interval, wilson_interval
from vap_env.evaluate.policy_runs import PolicyResult, PolicySource, run_imagined
from vap_env.evaluate.report import side_by_side, slug, write_video

TOP_DISTANCE_GAPS = 3
"""Episodes per policy listed for the largest final-distance gap between the worlds."""

REPRODUCE_TOLERANCE = 1e-4
"""m: how close a re-run's final distance must come to the recorded one to count as the same episode."""


def policy_summary(sim: PolicyResult, imagined: PolicyResult) -> dict[str, Any]:
    """The per-policy comparison: rates, their intervals and difference, mean final distances."""
    n_sim, n_imagined = len(sim.success), len(imagined.success)
    k_sim, k_imagined = int(sim.success.sum()), int(imagined.success.sum())
    row: dict[str, Any] = {
        "success_difference": k_imagined / n_imagined - k_sim / n_sim,
        "sim_success_ci95": list(wilson_interval(k_sim, n_sim)),
        "imagined_success_ci95": list(wilson_interval(k_imagined, n_imagined)),
        "success_difference_ci95": list(difference_interval(k_imagined, n_imagined, k_sim, n_sim)),
        "sim_final_distance": float(sim.final_distance.mean()),
        "imagined_final_distance": float(imagined.final_distance.mean()),
    }
    if np.isfinite(sim.object_displacement).all():
        row["sim_object_displacement"] = float(sim.object_displacement.mean())
        row["imagined_object_displacement"] = float(imagined.object_displacement.mean())
    return row


def episode_rows(sim: PolicyResult, imagined: PolicyResult) -> list[dict[str, Any]]:
    """One row per episode (same seed in both worlds): success and final distances, and their gap."""
    rows = []
    for k, seed in enumerate(sim.seeds):
        row = {
            "seed": int(seed),
            "sim_success": bool(sim.success[k]),
            "imagined_success": bool(imagined.success[k]),
            "sim_final_distance": float(sim.final_distance[k]),
            "imagined_final_distance": float(imagined.final_distance[k]),
            "distance_gap": float(imagined.final_distance[k] - sim.final_distance[k]),
        }
        if np.isfinite(sim.object_displacement[k]):
            row["sim_object_displacement"] = float(sim.object_displacement[k])
            row["imagined_object_displacement"] = float(imagined.object_displacement[k])
        rows.append(row)
    return rows


def pick_episodes(rows: Sequence[dict[str, Any]], top: int = TOP_DISTANCE_GAPS) -> dict[str, list[dict]]:
    """The episodes to look at among one policy's :func:`episode_rows`.

    Returns:
        ``{"success_disagreements": rows whose success differs (seed order), "largest_distance_gaps": the
        ``top`` rows by absolute final-distance gap (largest first)}``.
    """
    disagree = [r for r in rows if r["sim_success"] != r["imagined_success"]]
    by_gap = sorted(rows, key=lambda r: -abs(r["distance_gap"]))[:top]
    return {"success_disagreements": disagree, "largest_distance_gaps": by_gap}


def video_seeds(picked: dict[str, dict[str, list[dict]]], limit: int) -> dict[str, list[int]]:
    """The picked episodes that get a video, at most ``limit`` over every policy: success disagreements
    first, then the largest distance gaps, each by absolute distance gap.

    Args:
        picked: ``name -> pick_episodes(...)`` of each policy.
        limit: Videos in all (each costs a re-run of its imagined episode).

    Returns:
        ``name -> seeds`` (policies without a video left out).
    """
    ranked = [
        (tier, -abs(row["distance_gap"]), name, row["seed"])
        for name, rows in picked.items()
        for tier, key in enumerate(("success_disagreements", "largest_distance_gaps"))
        for row in rows[key]
    ]
    chosen: dict[str, list[int]] = {}
    for _, _, name, seed in sorted(ranked, key=lambda r: r[:2]):  # stable: policy order breaks ties
        if sum(map(len, chosen.values())) >= limit:
            break
        if seed not in chosen.get(name, []):
            chosen.setdefault(name, []).append(seed)
    return chosen


def write_disagreement_videos(
    out_dir: Path,
    name: str,
    source: PolicySource,
    seeds: list[int],
    recorded: PolicyResult,
    sim_episodes: dict[int, Episode],
    make_env: Callable[[int], Any],
    max_steps: int,
    batch_size: int,
) -> dict[int, dict[str, Any]]:
    """Re-runs the imagined episodes of ``seeds`` with frame capture and writes one video per seed.

    Args:
        out_dir: The evaluation's output directory (videos go to ``videos/disagreement/``).
        name: The policy's name.
        source: Its source, built again for the re-run exactly as for the recorded run.
        seeds: The episodes to show.
        recorded: The policy's recorded imagined result (the re-run is checked against it).
        sim_episodes: The policy's simulator episodes by seed (their frames are the left panel).
        make_env: ``num_envs -> WorldModelVectorEnv``, as for the recorded run.
        max_steps: The episode length limit.
        batch_size: Sub-envs per re-run batch (as for the recorded run).

    Returns:
        ``seed -> {"video": path relative to out_dir, "reproduced": bool}``.
    """
    if not seeds:
        return {}
    rerun = run_imagined(make_env, source, seeds, max_steps, batch_size, name, capture=True)
    index = {int(s): k for k, s in enumerate(recorded.seeds)}
    out = {}
    for j, seed in enumerate(seeds):
        k = index[seed]
        reproduced = bool(
            rerun.success[j] == recorded.success[k]
            and rerun.lengths[j] == recorded.lengths[k]
            and abs(rerun.final_distance[j] - recorded.final_distance[k]) <= REPRODUCE_TOLERANCE
        )
        episode = sim_episodes[seed]
        frames = _paired_frames(episode.frames, rerun.frames[j], episode.success, bool(rerun.success[j]))
        path = f"videos/disagreement/{slug(name)}_seed{seed}.mp4"
        write_video(out_dir / path, frames)
        out[seed] = {"video": path, "reproduced": reproduced}
    return out


def _paired_frames(
    sim: np.ndarray, imagined: np.ndarray, sim_success: bool, imagined_success: bool
) -> list[np.ndarray]:
    """Simulator | imagined frames step by step; the episode that ended first holds its last frame."""
    labels = (f"simulator: {_verdict(sim_success)}", f"imagined: {_verdict(imagined_success)}")
    steps = max(len(sim), len(imagined))
    return [
        side_by_side((sim[min(t, len(sim) - 1)], imagined[min(t, len(imagined) - 1)]), labels)
        for t in range(steps)
    ]


def _verdict(success: bool) -> str:
    return "solved" if success else "not solved"
