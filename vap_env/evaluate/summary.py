"""The evaluation report's policy, correlation, disagreement and segmenter sections, from the results.

Correlations across policies use the policies that finished in both worlds; a failed, interrupted or
not-run policy keeps its row (status and message) but no numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vap_env.evaluate.disagreement import episode_rows, pick_episodes, policy_summary
from vap_env.evaluate.metrics import mmrv, pearson, spearman
from vap_env.evaluate.policy_runs import PolicyResult, PolicySource, describe
from vap_env.evaluate.segmenter import RobotSegmenter

DISAGREEMENT_NOTE = (
    "Success rates measured on a few episodes are uncertain: the 95% intervals say how far the true rate of "
    "each world may be from the measured one, so a ranking that rests on differences inside them is not "
    "established. Every episode starts from the same seeded state with the same policy noise in both worlds, "
    "so episode by episode the worlds should agree; the episodes where they do not (success, or the final "
    "distance of the cube (push) or the gripper (reach) to the goal; in imagination the cube is where the "
    "model's object dynamics has it, or, for a model without one, where it is detected in the generated "
    "frames) show how imagination fails: look at their videos before trusting the "
    "ranking. Each video (simulator | imagined) shows the scored episode itself: its imagined frames are "
    "the ones captured while it was scored. Mean final distance and cube displacement are continuous "
    "measures beside success; their Pearson across policies tells whether imagination ranks the policies' "
    "progress as the simulator does."
)


def _correlations(sim: list[float], imagined: list[float]) -> dict[str, float]:
    return {
        "pearson": pearson(imagined, sim),
        "spearman": spearman(imagined, sim),
        "mmrv": mmrv(imagined, sim) if sim else float("nan"),
    }


def policy_report(
    sources: Mapping[str, PolicySource],
    sim: Mapping[str, PolicyResult],
    imagined: Mapping[str, PolicyResult],
    status: Mapping[str, dict[str, str]],
) -> dict[str, Any]:
    """``status``, ``policies`` (a row per policy, finished or not) and ``correlation`` (finished ones)."""
    per_policy: dict[str, dict[str, Any]] = {}
    for name, source in sources.items():
        row: dict[str, Any] = {**status[name], "source": describe(source)}
        if name in imagined:
            s, i = sim[name], imagined[name]
            row.update({
                "sim_success": float(s.success.mean()),
                "imagined_success": float(i.success.mean()),
                "sim_return": float(s.returns.mean()),
                "imagined_return": float(i.returns.mean()),
                "sim_length": float(s.lengths.mean()),
                "imagined_length": float(i.lengths.mean()),
                "episodes": len(s.success),
                **policy_summary(s, i),
                "per_episode": episode_rows(s, i),
            })  # fmt: skip
        per_policy[name] = row
    done = [name for name in sources if name in imagined]

    def column(key: str) -> list[float]:
        return [per_policy[name][key] for name in done]

    success = _correlations(column("sim_success"), column("imagined_success"))
    returns = _correlations(column("sim_return"), column("imagined_return"))
    correlation = {
        **success,
        "return_pearson": returns["pearson"],
        "return_spearman": returns["spearman"],
        "final_distance_pearson": pearson(column("imagined_final_distance"), column("sim_final_distance")),
        "policies": done,
    }
    if done and "sim_object_displacement" in per_policy[done[0]]:
        correlation["object_displacement_pearson"] = pearson(
            column("imagined_object_displacement"), column("sim_object_displacement")
        )
    states = [row["status"] for row in per_policy.values()]
    overall = "interrupted" if "interrupted" in states else "partial" if "failed" in states else "complete"
    return {"status": overall, "policies": per_policy, "correlation": correlation}


def disagreement_section(
    sim: Mapping[str, PolicyResult],
    imagined: Mapping[str, PolicyResult],
    videos: Mapping[str, Mapping[int, dict[str, Any]]],
) -> dict[str, Any]:
    """``{"note", "policies": {name: {success_disagreements, largest_distance_gaps}}, "videos"}``.

    Args:
        sim: ``name -> simulator result`` of the finished policies.
        imagined: ``name -> imagined result`` of the same policies.
        videos: ``name -> seed -> {"video": path}`` (:func:`write_disagreement_videos`).

    Returns:
        The section; each episode row has ``video`` (its path, ``None`` without one).
    """
    section: dict[str, Any] = {"note": DISAGREEMENT_NOTE, "policies": {}, "videos": []}
    for name, result in imagined.items():
        picked = pick_episodes(episode_rows(sim[name], result))
        shown = videos.get(name, {})
        for rows in picked.values():
            for row in rows:
                info = shown.get(row["seed"], {})
                row["video"] = info.get("video")
        section["policies"][name] = picked
        section["videos"] += [v["video"] for v in shown.values()]
    return section


def segmenter_report(fitted: RobotSegmenter, source: str, fidelity: dict[str, dict]) -> dict[str, Any]:
    """The segmenter's held-out scores, where it came from, and its ST-IoU on this evaluation's frames."""
    heldout = ("heldout_iou", "heldout_iou_degraded", "heldout_iou_codec", "heldout_frame_iou",
               "train_frames", "heldout_frames", "codec_augmented")  # fmt: skip
    return {
        **{k: fitted.info.get(k) for k in heldout},
        "source": source,
        "robot_st_iou_on_sim_frames": fidelity["segmenter"].get("robot_st_iou"),
        "object_st_iou_on_sim_frames": fidelity["segmenter"].get("object_st_iou"),
    }
