"""PSNR and SSIM against scikit-image on random images, batching, and input checks."""

from __future__ import annotations

import numpy as np
import pytest

from vap_env.evaluate.image_metrics import masked_psnr, psnr, ssim

metrics = pytest.importorskip("skimage.metrics")


def _noisy_pair(seed: int, shape: tuple[int, ...] = (37, 45, 3)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 61, shape), 0, 255).astype(np.uint8)
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_matches_skimage_gaussian_window(seed: int) -> None:
    a, b = _noisy_pair(seed)
    expected = metrics.structural_similarity(
        a, b, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(a, b) == pytest.approx(expected, abs=1e-4)


def test_ssim_matches_skimage_default_uniform_window() -> None:
    a, b = _noisy_pair(3)
    expected = metrics.structural_similarity(a, b, data_range=255, channel_axis=-1)
    assert ssim(a, b, gaussian_weights=False) == pytest.approx(expected, abs=1e-4)


def test_ssim_and_psnr_on_float_images_in_minus_one_one() -> None:
    rng = np.random.default_rng(4)
    a = rng.uniform(-1, 1, (32, 40, 3))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), -1, 1)
    expected_ssim = metrics.structural_similarity(
        a, b, data_range=2.0, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(a, b, data_range=2.0) == pytest.approx(expected_ssim, abs=1e-4)
    assert psnr(a, b, data_range=2.0) == pytest.approx(
        metrics.peak_signal_noise_ratio(a, b, data_range=2.0), abs=1e-4
    )


def test_psnr_matches_skimage() -> None:
    a, b = _noisy_pair(5)
    assert psnr(a, b) == pytest.approx(metrics.peak_signal_noise_ratio(a, b, data_range=255), abs=1e-4)


def test_metrics_are_batched_over_leading_dims() -> None:
    pairs = [_noisy_pair(seed, (24, 24, 3)) for seed in range(6)]
    a = np.stack([p[0] for p in pairs]).reshape(2, 3, 24, 24, 3)
    b = np.stack([p[1] for p in pairs]).reshape(2, 3, 24, 24, 3)
    batched_ssim, batched_psnr = ssim(a, b), psnr(a, b)
    assert batched_ssim.shape == (2, 3) and batched_psnr.shape == (2, 3)
    np.testing.assert_allclose(batched_ssim.reshape(-1), [ssim(*p) for p in pairs], atol=1e-12)
    np.testing.assert_allclose(batched_psnr.reshape(-1), [psnr(*p) for p in pairs], atol=1e-12)


def test_identical_images() -> None:
    a, _ = _noisy_pair(6)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert psnr(a, a) == np.inf


def test_input_checks() -> None:
    a, b = _noisy_pair(7)
    with pytest.raises(ValueError, match="data_range"):
        psnr(a.astype(np.float32), b.astype(np.float32))
    with pytest.raises(ValueError, match="same shape"):
        ssim(a, b[:-1])
    with pytest.raises(ValueError, match="H, W >= 11"):
        ssim(a[:8, :8], b[:8, :8])


def test_masked_psnr_pools_the_masked_pixels() -> None:
    a, b = _noisy_pair(8, (2, 20, 20, 3))
    full = np.ones((2, 20, 20), dtype=bool)
    assert masked_psnr(a, b, full) == pytest.approx(
        metrics.peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9
    )
    mask = np.zeros((2, 20, 20), dtype=bool)
    mask[0, 3:9, 4:6] = mask[1, 10, 10] = True
    error = np.square(a[mask].astype(float) - b[mask].astype(float)).mean()
    assert masked_psnr(a, b, mask) == pytest.approx(10 * np.log10(255**2 / error), abs=1e-9)
    assert np.isnan(masked_psnr(a, b, np.zeros_like(mask)))
    with pytest.raises(ValueError, match="without channels"):
        masked_psnr(a, b, mask[0])
