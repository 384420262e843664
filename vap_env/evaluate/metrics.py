"""Evaluation metrics: mask IoU over space and time, rank statistics across policies, per-horizon curves.

Image fidelity (PSNR, SSIM) lives in :mod:`vap_env.evaluate.image_metrics`; this module adds what judges the
*moving* parts and the policy ranking:

- :func:`st_iou` — spatio-temporal IoU of two mask videos, ``sum_t |P_t & G_t| / sum_t |P_t | G_t|`` (the
  paper's ST-IoU: one IoU over the whole space-time volume, so frames where the robot covers more pixels
  weigh more), :func:`frame_iou` per frame and :func:`st_iou_curve` over every prefix ``1..t``;
- :func:`pearson`, :func:`spearman` (average ranks for ties) and :func:`mmrv`, the mean maximum rank
  violation of SIMPLER (Li et al. 2024), to compare imagined with simulated success rates of a policy family;
- :func:`horizon_mean` / :func:`capped_psnr` to average ragged per-episode curves horizon by horizon;
- :func:`wilson_interval` of a success rate and :func:`difference_interval` of two rates' difference (how far
  a rate measured on a few episodes can be from the true one).

Empty masks: when neither the prediction nor the ground truth holds a pixel (``|P | G| = 0``) the IoU is the
``empty`` argument, 1.0 by default — predicting nothing where there is nothing is a perfect answer (the cube
entirely hidden behind the gripper, say). Pass ``empty=float("nan")`` to leave such cases out of averages
instead (:func:`horizon_mean` skips NaN).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vap_env.evaluate.image_metrics import psnr

PSNR_CAP = 100.0
"""dB. Identical uint8 frames have infinite PSNR; one grey level off in one pixel of a 64x64 RGB frame is
already 89 dB, so capping at 100 dB changes no finite value and keeps averages finite."""


# ------------------------------------------------------------------------------------------------ masks
def _mask_pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, true = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    if pred.shape != true.shape:
        raise ValueError(f"masks must have the same shape, got {pred.shape} and {true.shape}")
    if pred.ndim < 2:
        raise ValueError(f"masks must be (..., H, W), got shape {pred.shape}")
    return pred, true


def _ratio(intersection: np.ndarray, union: np.ndarray, empty: float) -> np.ndarray:
    out = np.full(np.shape(union), float(empty), dtype=np.float64)
    np.divide(intersection, union, out=out, where=union > 0)
    return out


def frame_iou(pred: np.ndarray, true: np.ndarray, empty: float = 1.0) -> np.ndarray:
    """IoU of each frame's masks.

    Args:
        pred: ``(T, H, W)`` (or ``(H, W)``) boolean predicted masks.
        true: Ground-truth masks of the same shape.
        empty: The IoU of a frame where both masks are empty (see the module docstring).

    Returns:
        ``(T,)`` float64 IoUs (a 0-d array for one frame).
    """
    pred, true = _mask_pair(pred, true)
    inter = (pred & true).sum(axis=(-2, -1))
    union = (pred | true).sum(axis=(-2, -1))
    return _ratio(inter, union, empty)


def st_iou(pred: np.ndarray, true: np.ndarray, empty: float = 1.0) -> float:
    """Spatio-temporal IoU of two mask videos: ``sum_t |P_t & G_t| / sum_t |P_t | G_t|``.

    Args:
        pred: ``(T, H, W)`` boolean predicted masks.
        true: ``(T, H, W)`` ground-truth masks.
        empty: The value when every frame of both videos is empty (see the module docstring).

    Returns:
        The ST-IoU in ``[0, 1]`` (or ``empty``).
    """
    pred, true = _mask_pair(pred, true)
    return float(_ratio(np.sum(pred & true), np.sum(pred | true), empty))


def st_iou_curve(pred: np.ndarray, true: np.ndarray, empty: float = 1.0) -> np.ndarray:
    """ST-IoU of every prefix of a mask video: entry ``t - 1`` is :func:`st_iou` of frames ``1..t``.

    Args:
        pred: ``(T, H, W)`` boolean predicted masks.
        true: ``(T, H, W)`` ground-truth masks.
        empty: The value of a prefix whose frames are all empty in both videos.

    Returns:
        ``(T,)`` float64.
    """
    pred, true = _mask_pair(pred, true)
    if pred.ndim != 3:
        raise ValueError(f"mask videos must be (T, H, W), got shape {pred.shape}")
    inter = np.cumsum((pred & true).sum(axis=(1, 2)))
    union = np.cumsum((pred | true).sum(axis=(1, 2)))
    return _ratio(inter, union, empty)


# ------------------------------------------------------------------------------------------------ ranks
def _paired(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite")
    return x, y


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation coefficient.

    Returns:
        The coefficient in ``[-1, 1]``; ``nan`` with fewer than two points or when either side is constant
        (the correlation is undefined there: no ranking to agree with).
    """
    x, y = _paired(x, y)
    if len(x) < 2:
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    if denom == 0:
        return float("nan")
    return float(np.clip(np.sum(dx * dy) / denom, -1.0, 1.0))


def rankdata(x: Sequence[float]) -> np.ndarray:
    """1-based ranks of ``x`` (ascending), tied values getting the average of the ranks they span."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # group boundaries of equal values; every member of a group gets the mean of its 1-based positions
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    average = (starts + 1 + ends) / 2.0  # mean of positions starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson of the average ranks (ties share their mean rank).

    Returns:
        The coefficient in ``[-1, 1]``; ``nan`` as for :func:`pearson`.
    """
    x, y = _paired(x, y)
    return pearson(rankdata(x), rankdata(y))


def mmrv(imagined_success: Sequence[float], true_success: Sequence[float]) -> float:
    """Mean maximum rank violation (SIMPLER, Li et al. 2024) of imagined against true success rates.

    ``MMRV = (1/N) sum_i max_j |r_i - r_j| * 1[(s_i < s_j) != (r_i < r_j)]`` with ``r`` the true (simulator)
    and ``s`` the imagined rates: each policy is charged the largest true-rate gap to a policy that the
    imagined rates order differently. 0 is a perfect ranking; lower is better.

    Ties: an imagined tie between policies whose true rates differ counts as a violation, charged to the
    policy with the *lower* true rate (``s_i < s_j`` is false while ``r_i < r_j`` is true). SIMPLER's
    reference code writes the test with ``>`` and charges the higher one instead; the two agree whenever
    the imagined rates have no ties.

    Returns:
        The MMRV in ``[0, max r - min r]``; 0.0 for a single policy.
    """
    s, r = _paired(imagined_success, true_success)
    if len(s) == 0:
        raise ValueError("mmrv needs at least one policy")
    violated = (s[:, None] < s[None, :]) != (r[:, None] < r[None, :])
    gap = np.abs(r[:, None] - r[None, :])
    return float(np.mean(np.max(np.where(violated, gap, 0.0), axis=1)))


# ------------------------------------------------------------------------------------------- horizons
def capped_psnr(a: np.ndarray, b: np.ndarray, cap: float = PSNR_CAP) -> np.ndarray:
    """Per-frame PSNR (dB) of uint8 ``(..., H, W, 3)`` frames, identical frames capped at ``cap``."""
    return np.minimum(np.asarray(psnr(a, b), dtype=np.float64), cap)


def horizon_mean(curves: Sequence[np.ndarray], horizon: int) -> dict[str, np.ndarray]:
    """Averages ragged per-episode curves horizon by horizon.

    Args:
        curves: One 1-D array per episode; entry ``h - 1`` is the episode's value at horizon ``h``. Episodes
            that ended early have shorter curves; NaN entries are left out.
        horizon: Length ``H`` of the result.

    Returns:
        ``{"mean": (H,), "sem": (H,), "count": (H,)}``: the mean over the episodes that have a finite value
        at each horizon, its standard error (0 with one episode) and how many episodes that was; ``mean``
        and ``sem`` are NaN where no episode reaches a horizon.
    """
    table = np.full((len(curves), horizon), np.nan)
    for i, curve in enumerate(curves):
        curve = np.asarray(curve, dtype=np.float64)[:horizon]
        table[i, : len(curve)] = curve
    finite = np.isfinite(table)
    count = finite.sum(axis=0)
    total = np.where(finite, table, 0.0).sum(axis=0)
    mean = np.divide(total, count, out=np.full(horizon, np.nan), where=count > 0)
    squares = np.where(finite, (table - mean) ** 2, 0.0).sum(axis=0)
    var = np.divide(squares, count - 1, out=np.zeros(horizon), where=count > 1)
    sem = np.where(count > 0, np.sqrt(var / np.maximum(count, 1)), np.nan)
    return {"mean": mean, "sem": sem, "count": count}


# ------------------------------------------------------------------------------------------- intervals
Z_95 = 1.959963984540054
"""The standard normal quantile of 0.975: a two-sided 95% interval."""


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a success rate ``successes / n`` (95% with the default ``z``).

    Unlike the normal-approximation (Wald) interval it stays inside [0, 1] and does not collapse to a point
    at 0 or n successes, which matters for the few episodes an evaluation runs: 0 of 10 is 0 to 0.28.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when ``n`` is 0.

    Raises:
        ValueError: ``successes`` outside ``0..n``.
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"`successes` must be in 0..n, got {successes} of {n}")
    if n == 0:
        return float("nan"), float("nan")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # at 0 or n successes the bound is exactly 0 or 1; the formula leaves a rounding error there
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return float(low), float(high)


def difference_interval(
    successes_a: int, n_a: int, successes_b: int, n_b: int, z: float = Z_95
) -> tuple[float, float]:
    """Interval of the difference of two success rates ``a - b``: Newcombe's hybrid score interval.

    Built from the two Wilson intervals (Newcombe 1998, method 10), for independent samples. Episodes of an
    evaluation are paired (the same seeds in both worlds), which usually correlates the two outcomes
    positively; ignoring that makes this interval wider than a paired one: conservative.

    Returns:
        ``(low, high)`` in ``[-1, 1]``; ``(nan, nan)`` when either ``n`` is 0.
    """
    low_a, high_a = wilson_interval(successes_a, n_a, z)
    low_b, high_b = wilson_interval(successes_b, n_b, z)
    if n_a == 0 or n_b == 0:
        return float("nan"), float("nan")
    p_a, p_b = successes_a / n_a, successes_b / n_b
    d = p_a - p_b
    low = d - np.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    high = d + np.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    return float(max(-1.0, low)), float(min(1.0, high))


__all__ = [
    "PSNR_CAP",
    "Z_95",
    "capped_psnr",
    "difference_interval",
    "frame_iou",
    "horizon_mean",
    "mmrv",
    "pearson",
    "rankdata",
    "spearman",
    "st_iou",
    "st_iou_curve",
    "wilson_interval",
]
