"""``report.md``: an evaluation report (the ``report.json`` data) as Markdown for a reader deciding whether
to trust imagination's ranking of the policies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

WORLDS = {"sim": "simulator", "imagined": "imagination"}


def fmt(value: Any, digits: int = 3) -> str:
    """A number as text (``n/a`` for ``None``/NaN), other values as they are."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]


def _rate(value: float | None, interval: Sequence[float | None] | None, digits: int = 2) -> str:
    low, high = interval or (None, None)
    return f"{fmt(value, digits)} [{fmt(low, 2)}, {fmt(high, 2)}]"


def markdown(report: dict, videos: list[str]) -> str:
    """The report as Markdown: policies, disagreement, fidelity, segmentation, videos."""
    cfg = report["config"]
    lines = [
        f"# World-model evaluation: {cfg['robot']} / {cfg['task']}",
        "",
        f"Model `{cfg['model']}` ({cfg['prompt']} prompts, {cfg['image_size']} px, "
        f"{cfg['num_inference_steps']} denoising steps); {cfg['episodes']} episodes per policy from seeds "
        f"{cfg['seed']}..{cfg['seed'] + cfg['episodes'] - 1}, at most {cfg['max_steps']} steps.",
        "",
    ]
    if report.get("status") == "interrupted":
        lines += [
            "**Interrupted**: only the policies marked `ok` finished; nothing after them was measured.",
            "",
        ]
    lines += _policy_section(report)
    if "disagreement" in report:
        lines += _disagreement_section(report)
    if "fidelity" in report:
        lines += _fidelity_section(report)
    if videos:
        lines += ["## Videos (simulator | imagined | prompt)", "", "![preview](videos/preview.png)", ""]
        lines += [f"- [{v}]({v})" for v in videos]
    return "\n".join(lines) + "\n"


def _policy_section(report: dict) -> list[str]:
    c = report["correlation"]
    lines = ["## Policy evaluation: imagination against the simulator", ""]
    header = ("policy", "status", "sim success [95% CI]", "imagined success [95% CI]", "difference [95% CI]",
              "sim return", "imagined return")  # fmt: skip
    rows, problems = [], []
    for name, r in report["policies"].items():
        if "sim_success" not in r:
            rows.append((name, r["status"], "", "", "", None, None))
            if r["status"] == "failed":
                where = WORLDS.get(r.get("failed_in", ""), r.get("failed_in"))
                problems.append(f"- `{name}` failed in the {where}: {r.get('error')}")
            continue
        rows.append((
            name, r["status"],
            _rate(r["sim_success"], r.get("sim_success_ci95")),
            _rate(r["imagined_success"], r.get("imagined_success_ci95")),
            _rate(r.get("success_difference"), r.get("success_difference_ci95")),
            r["sim_return"], r["imagined_return"],
        ))  # fmt: skip
    lines += table(header, rows)
    lines += ["", *problems, ""] if problems else [""]
    used = c.get("policies", list(report["policies"]))
    lines += [
        f"Success rates across the {len(used)} finished policies: Pearson {fmt(c['pearson'])}, Spearman "
        f"{fmt(c['spearman'])}, MMRV {fmt(c['mmrv'])} (0 = same ranking). Returns: Pearson "
        f"{fmt(c['return_pearson'])}, Spearman {fmt(c['return_spearman'])}. Intervals: Wilson score (rates), "
        "Newcombe hybrid score (difference, imagined - sim; it ignores that the episodes are paired, so it "
        "is conservative).",
        "",
        "![success](success_scatter.png)",
        "",
    ]
    return lines


def _disagreement_section(report: dict) -> list[str]:
    d, c = report["disagreement"], report["correlation"]
    lines = ["## Where imagination and the simulator disagree", "", d["note"], ""]
    finished = {n: r for n, r in report["policies"].items() if "sim_success" in r}
    has_object = any("sim_object_displacement" in r for r in finished.values())
    header = ["policy", "sim final distance (m)", "imagined final distance (m)"]
    header += ["sim cube moved (m)", "imagined cube moved (m)"] if has_object else []
    rows = []
    for name, r in finished.items():
        row = [name, r["sim_final_distance"], r["imagined_final_distance"]]
        rows.append(
            row + ([r["sim_object_displacement"], r["imagined_object_displacement"]] if has_object else [])
        )
    lines += table(header, rows)
    pearsons = f"Pearson across policies: final distance {fmt(c.get('final_distance_pearson'))}"
    if has_object:
        pearsons += f", cube displacement {fmt(c.get('object_displacement_pearson'))}"
    lines += ["", pearsons + ".", ""]
    for name, picked in d["policies"].items():
        lines += [f"### {name}", ""]
        disagree = picked["success_disagreements"]
        lines += [f"Success disagrees in {len(disagree)} of {finished[name]['episodes']} episodes."]
        lines += ["", *_episode_table(disagree), ""] if disagree else [""]
        lines += ["Largest final-distance gaps:", "", *_episode_table(picked["largest_distance_gaps"]), ""]
    return lines


def _episode_table(rows: Sequence[dict]) -> list[str]:
    header = ("seed", "sim success", "imagined success", "sim final distance (m)", "imagined final distance (m)",
              "video")  # fmt: skip
    body = []
    for r in rows:
        video = f"[video]({r['video']})" if r.get("video") else ""
        body.append((r["seed"], r["sim_success"], r["imagined_success"], r["sim_final_distance"],
                     r["imagined_final_distance"], video))  # fmt: skip
    return table(header, body)


def _fidelity_section(report: dict) -> list[str]:
    lines = [
        "## Open-loop fidelity",
        "",
        "The world model replays each simulator episode's actions from its first frame; frames are compared "
        "with the simulator's at the same step. Baseline: repeat the first frame. ST-IoU is over steps "
        "1..h.",
        "",
    ]
    f, b = report["fidelity"], report["baseline"]
    names = [n for n in ("psnr", "ssim", "robot_st_iou", "object_st_iou") if n in f]
    header = ["h"] + [f"{n} {who}" for n in names for who in ("model", "base")] + ["episodes"]
    rows = [
        [h] + [src[n][i] for n in names for src in (f, b)] + [f["count"][i]]
        for i, h in enumerate(f["horizons"])
    ]
    lines += table(header, rows)
    s, r = report["segmenter"], report["replay"]
    lines += [
        "",
        "![fidelity](fidelity_vs_horizon.png)",
        "",
        "## Segmentation of generated frames",
        "",
        "Robot masks come from a segmenter fitted on simulator frames: held-out IoU "
        f"{fmt(s['heldout_iou'])} "
        f"(clean frames), {fmt(s['heldout_iou_degraded'])} (blurred/noisy frames), "
        f"{fmt(s.get('heldout_iou_codec'))} (through the model's codec), on "
        f"{s['heldout_frames']} frames of other seeds. Object masks come from the red-cube detector. On "
        "this evaluation's simulator frames the masks reach, at the last horizon, robot ST-IoU "
        f"{fmt(_last(s['robot_st_iou_on_sim_frames']))}, object ST-IoU "
        f"{fmt(_last(s['object_st_iou_on_sim_frames']))}: about what a perfect generation would score.",
        "",
        f"Replays started from the simulator's first frame: {r['start_frames_identical']}; largest "
        f"commanded-joint difference to the simulator: {fmt(r['max_command_error_rad'], 5)} rad.",
        "",
    ]
    return lines


def _last(values: Sequence[Any] | None) -> Any:
    finite = [v for v in (values or []) if v is not None and math.isfinite(v)]
    return finite[-1] if finite else None
