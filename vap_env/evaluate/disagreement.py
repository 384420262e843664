"""Where imagination and the simulator disagree: rates with intervals, per-episode outcomes, videos.

A ranking correlation over a handful of policies hides *how* the worlds differ. Per policy this module puts
the two success rates beside their 95% Wilson intervals and the interval of their difference, the mean final
distance of the achieved goal to the goal and (with an object) the cube's displacement in both worlds, and
picks the episodes to look at: every episode whose success the worlds disagree on, and the ``top`` episodes
with the largest final-distance gap. The worst few of them over all policies get a side-by-side video
(simulator | imagined, closed loop, same seed and policy) of the scored episodes themselves: the imagined
frames are captured while each imagined batch runs, and :class:`CandidateFrames` keeps only those of the
episodes that can still be among the chosen ones (the simulator's frames are the recorded episode's, kept
for the replays).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vap_env.data import Episode
from vap_env.evaluate.metrics import difference_interval, wilson_interval
from vap_env.evaluate.policy_runs import PolicyResult
from vap_env.evaluate.report import side_by_side, slug, write_video

TOP_DISTANCE_GAPS = 3
"""Episodes per policy listed for the largest final-distance gap between the worlds."""


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
        limit: Videos in all.

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


@dataclass
class Candidate:
    """An imagined episode that may get a video.

    Attributes:
        index: Its position among the policy's seeds (the ranking's ties go by it, as in :func:`episode_rows`).
        row: Its :func:`episode_rows` row (both worlds' outcomes).
        frames: Its imagined frames as scored, ``(T + 1, H, W, 3)`` uint8.
    """

    index: int
    row: dict[str, Any]
    frames: np.ndarray

    @property
    def seed(self) -> int:
        return int(self.row["seed"])


class CandidateFrames:
    """The imagined frames of the episodes that may still get a video, kept while the policies run.

    The videos go to the ``limit`` episodes :func:`video_seeds` ranks first over every policy. Each policy's
    simulator episodes run before its imagined ones, so after each imagined batch (run with frame capture)
    both worlds' outcomes of its episodes are known: :meth:`add` keeps the frames of the policy's ``limit``
    best episodes so far (:func:`video_seeds` over that policy alone) and drops the rest. A later batch can
    only push an episode down the ranking, so no dropped episode could have been chosen. :meth:`commit`
    then keeps, of the finished policies, only the ``limit`` episodes chosen over all of them (a later
    policy too can only push them down), and :meth:`discard` forgets a policy that failed.

    Memory: one batch's frames (while :meth:`add` runs) plus at most ``2 * limit`` episodes' frames (the
    running policy's ``limit`` and the finished policies' ``limit``).

    Args:
        limit: Videos in all (the evaluation's ``disagreement_videos``).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: dict[str, list[Candidate]] = {}
        self._finished: dict[str, list[Candidate]] = {}

    def add(self, name: str, sim: PolicyResult, batch: PolicyResult) -> None:
        """Takes one imagined batch of policy ``name``.

        Args:
            name: The policy's name.
            sim: Its simulator result over all its seeds (their order breaks the ranking's ties).
            batch: One imagined batch's result, with its frames (``capture=True``).

        Raises:
            ValueError: The batch holds no frames, or a seed ``sim`` does not have.
        """
        if len(batch.frames) != len(batch.seeds):
            raise ValueError("the imagined batch holds no frames: run it with capture=True")
        position = {int(s): k for k, s in enumerate(sim.seeds)}
        if any(int(s) not in position for s in batch.seeds):
            raise ValueError(f"the batch's seeds {batch.seeds.tolist()} are not all among the simulator's")
        index = [position[int(s)] for s in batch.seeds]
        rows = episode_rows(sim.select(index), batch)
        new = [Candidate(k, row, f) for k, row, f in zip(index, rows, batch.frames, strict=True)]
        best = _chosen({name: self._running.get(name, []) + new}, self.limit)
        self._running[name] = _by_index(best.get(name, []))

    def commit(self, name: str) -> None:
        """Policy ``name`` finished in both worlds: keeps its candidates among the best over all finished."""
        self._finished[name] = self._running.pop(name, [])
        best = _chosen(self._finished, self.limit)
        self._finished = {n: _by_index(best[n]) for n in self._finished if n in best}

    def discard(self, name: str) -> None:
        """Policy ``name`` failed: forgets its candidates."""
        self._running.pop(name, None)

    def chosen(self) -> dict[str, list[Candidate]]:
        """The episodes that get a video, over the committed policies: :func:`video_seeds`'s choice, in
        its order (``name -> candidates``; policies without a video left out)."""
        return _chosen(self._finished, self.limit)

    def held(self) -> int:
        """How many episodes' frames are kept now."""
        return sum(map(len, self._running.values())) + sum(map(len, self._finished.values()))


def _chosen(candidates: Mapping[str, list[Candidate]], limit: int) -> dict[str, list[Candidate]]:
    """What :func:`video_seeds` chooses among ``candidates`` (each policy's in seed-index order)."""
    picked = {name: pick_episodes([c.row for c in kept]) for name, kept in candidates.items()}
    by_seed = {name: {c.seed: c for c in kept} for name, kept in candidates.items()}
    return {name: [by_seed[name][s] for s in seeds] for name, seeds in video_seeds(picked, limit).items()}


def _by_index(candidates: list[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: c.index)


def write_disagreement_videos(
    out_dir: Path, chosen: Mapping[str, Sequence[Candidate]], sim_episodes: Mapping[str, Sequence[Episode]]
) -> dict[str, dict[int, dict[str, Any]]]:
    """Writes one video (simulator | imagined) per chosen episode, from the frames of the scored episodes.

    Args:
        out_dir: The evaluation's output directory (videos go to ``videos/disagreement/``).
        chosen: ``name -> candidates`` (:meth:`CandidateFrames.chosen`): the imagined frames, right panel.
        sim_episodes: ``name -> recorded simulator episodes``: their frames are the left panel.

    Returns:
        ``name -> seed -> {"video": path relative to out_dir}``.
    """
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for name, candidates in chosen.items():
        by_seed = {int(e.seed): e for e in sim_episodes[name]}
        for c in candidates:
            episode = by_seed[c.seed]
            frames = _paired_frames(episode.frames, c.frames, episode.success, c.row["imagined_success"])
            path = f"videos/disagreement/{slug(name)}_seed{c.seed}.mp4"
            write_video(out_dir / path, frames)
            out.setdefault(name, {})[c.seed] = {"video": path}
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
