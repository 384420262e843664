"""Evaluation metrics against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vap_env.evaluate.metrics import (
    PSNR_CAP,
    capped_psnr,
    difference_interval,
    frame_iou,
    horizon_mean,
    mmrv,
    pearson,
    rankdata,
    spearman,
    st_iou,
    st_iou_curve,
    wilson_interval,
)


def _two_frame_masks() -> tuple[np.ndarray, np.ndarray]:
    # frame 0: P = top row, G = top-left pixel          -> |P & G| = 1, |P | G| = 2
    # frame 1: P = nothing, G = top-right + bottom row  -> |P & G| = 0, |P | G| = 3
    pred = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)
    true = np.array([[[1, 0], [0, 0]], [[0, 1], [1, 1]]], dtype=bool)
    return pred, true


def test_st_iou_pools_space_and_time() -> None:
    pred, true = _two_frame_masks()
    # (1 + 0) / (2 + 3) = 0.2, not the mean of the per-frame IoUs (0.5 + 0) / 2 = 0.25
    assert st_iou(pred, true) == pytest.approx(0.2)
    np.testing.assert_allclose(frame_iou(pred, true), [0.5, 0.0])
    # prefixes: frames 1..1 -> 1 / 2; frames 1..2 -> 1 / 5
    np.testing.assert_allclose(st_iou_curve(pred, true), [0.5, 0.2])


def test_iou_of_empty_masks_is_the_documented_value() -> None:
    empty = np.zeros((3, 4, 4), dtype=bool)
    assert st_iou(empty, empty) == 1.0
    assert math.isnan(st_iou(empty, empty, empty=float("nan")))
    one = empty.copy()
    one[1, 2, 2] = True
    # a single predicted pixel where there is nothing: 0 / 1
    assert st_iou(one, empty) == 0.0
    # per frame: frames 0 and 2 are empty-empty (-> 1), frame 1 is 0 / 1
    np.testing.assert_allclose(frame_iou(one, empty), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(st_iou_curve(one, empty), [1.0, 0.0, 0.0])


def test_mask_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="same shape"):
        st_iou(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 5), bool))


def test_pearson_hand_computed() -> None:
    # x = 1, 2, 3 (mean 2), y = 1, 2, 5 (mean 8/3): dx = -1, 0, 1; dy = -5/3, -2/3, 7/3
    # sum dx dy = 5/3 + 7/3 = 4; sum dx^2 = 2; sum dy^2 = (25 + 4 + 49) / 9 = 78/9
    # r = 4 / sqrt(2 * 78 / 9) = 12 / sqrt(156) = 0.960769...
    assert pearson([1, 2, 3], [1, 2, 5]) == pytest.approx(12 / math.sqrt(156))
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_pearson_undefined_cases_are_nan() -> None:
    assert math.isnan(pearson([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]))  # constant side
    assert math.isnan(pearson([1.0], [2.0]))  # one point
    with pytest.raises(ValueError, match="same length"):
        pearson([1, 2], [1, 2, 3])


def test_rankdata_averages_ties() -> None:
    # sorted: 1 (rank 1), 2 (rank 2), 3, 3 (ranks 3 and 4 -> both 3.5)
    np.testing.assert_array_equal(rankdata([3, 1, 3, 2]), [3.5, 1.0, 3.5, 2.0])


def test_spearman_with_ties_hand_computed() -> None:
    # ranks x = 1, 2.5, 2.5, 4; ranks y = 2, 1, 3, 4 (both mean 2.5)
    # dx = -1.5, 0, 0, 1.5; dy = -0.5, -1.5, 0.5, 1.5
    # sum dx dy = 0.75 + 2.25 = 3; sum dx^2 = 4.5; sum dy^2 = 0.25 + 2.25 + 0.25 + 2.25 = 5
    # rho = 3 / sqrt(22.5) = sqrt(0.4) = 0.632456...
    assert spearman([0.1, 0.4, 0.4, 0.9], [0.2, 0.1, 0.5, 0.7]) == pytest.approx(math.sqrt(0.4))
    # monotone but not linear: ranks agree perfectly
    assert spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)


def test_mmrv_hand_computed() -> None:
    # true r = 0.1, 0.3, 0.6 (order 0 < 1 < 2); imagined s = 0.2, 0.5, 0.4 (order 0 < 2 < 1)
    # i=0: agrees with both others -> 0
    # i=1: vs 2: s1 < s2 false, r1 < r2 true -> violation |0.3 - 0.6| = 0.3 -> max 0.3
    # i=2: vs 1: s2 < s1 true, r2 < r1 false -> violation 0.3 -> max 0.3
    # MMRV = (0 + 0.3 + 0.3) / 3 = 0.2
    assert mmrv([0.2, 0.5, 0.4], [0.1, 0.3, 0.6]) == pytest.approx(0.2)
    # perfect ranking (any monotone map of the true rates) -> 0
    assert mmrv([0.0, 0.1, 0.9], [0.1, 0.3, 0.6]) == 0.0
    # reversed: i=0 max(0.1, 0.2) = 0.2; i=1 max(0.1, 0.1) = 0.1; i=2 max(0.2, 0.1) = 0.2 -> 0.5 / 3
    assert mmrv([0.3, 0.2, 0.1], [0.1, 0.2, 0.3]) == pytest.approx(0.5 / 3)
    assert mmrv([0.7], [0.2]) == 0.0


def test_mmrv_charges_imagined_ties_to_the_lower_true_rate() -> None:
    # s all tied, r = 0, 0.1, 1:
    # i=0: vs 1: s0 < s1 false, r0 < r1 true -> 0.1; vs 2: -> 1.0; max 1.0
    # i=1: vs 0: false, false -> ok; vs 2: false, true -> 0.9; max 0.9
    # i=2: r2 < r_j false and s2 < s_j false for both -> 0
    # MMRV = (1.0 + 0.9 + 0) / 3 = 0.6333...
    assert mmrv([0.0, 0.0, 0.0], [0.0, 0.1, 1.0]) == pytest.approx(1.9 / 3)


def test_horizon_mean_over_ragged_curves() -> None:
    # h=1: 1, 3, 5 -> mean 3, sample std 2, sem 2 / sqrt(3); h=2: 2 (the NaN is left out) -> 2, sem 0
    # h=3: 3 -> 3; h=4: nobody -> NaN, count 0
    out = horizon_mean([np.array([1.0, 2.0, 3.0]), np.array([3.0, np.nan]), np.array([5.0])], horizon=4)
    np.testing.assert_allclose(out["mean"][:3], [3.0, 2.0, 3.0])
    assert math.isnan(out["mean"][3])
    np.testing.assert_array_equal(out["count"], [3, 1, 1, 0])
    np.testing.assert_allclose(out["sem"][:3], [2 / math.sqrt(3), 0.0, 0.0])


def test_capped_psnr() -> None:
    a = np.zeros((2, 8, 8, 3), np.uint8)
    b = a.copy()
    b[1] = 255  # every pixel off by the full range -> MSE = 255^2 -> 0 dB
    np.testing.assert_allclose(capped_psnr(a, b), [PSNR_CAP, 0.0])


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),  # the upper bound is z^2 / (n + z^2) = 3.8415 / 23.8415
        (1, 29, (0.0061, 0.1718)),
        (29, 29, (0.8830, 1.0)),
        (5, 10, (0.2366, 0.7634)),  # symmetric around 1/2
    ],
)
def test_wilson_interval_matches_newcombe(successes: int, n: int, expected: tuple[float, float]) -> None:
    assert wilson_interval(successes, n) == pytest.approx(expected, abs=1e-4)


def test_wilson_interval_edges() -> None:
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    with pytest.raises(ValueError, match="0..n"):
        wilson_interval(11, 10)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # Newcombe (1998), "Interval estimation for the difference between independent proportions", method 10
        ((56, 70), (48, 80), (0.0524, 0.3339)),
        ((9, 10), (3, 10), (0.1705, 0.8090)),
        ((6, 7), (2, 7), (0.0582, 0.8062)),
        ((5, 56), (0, 29), (-0.0381, 0.1926)),
    ],
)
def test_difference_interval_matches_newcombe(
    a: tuple[int, int], b: tuple[int, int], expected: tuple[float, float]
) -> None:
    assert difference_interval(*a, *b) == pytest.approx(expected, abs=1e-4)
