"""Per-image fidelity metrics: PSNR and SSIM, batched over leading dimensions, and masked PSNR.

Both match ``skimage.metrics`` (to 1e-4 and better, checked in the tests) without depending on it: SSIM
defaults to Wang et al.'s settings, which scikit-image gives with ``gaussian_weights=True, sigma=1.5,
use_sample_covariance=False`` (an 11x11 Gaussian window); ``gaussian_weights=False`` gives scikit-image's
own default (a 7x7 uniform window with the sample covariance).
"""

from __future__ import annotations

import numpy as np

_K1, _K2 = 0.01, 0.03


def _as_float_pair(
    a: np.ndarray, b: np.ndarray, data_range: float | None
) -> tuple[np.ndarray, np.ndarray, float]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if data_range is None:
        if a.dtype != np.uint8 or b.dtype != np.uint8:
            raise ValueError(
                f"`data_range` is required for non-uint8 images, got dtypes {a.dtype}, {b.dtype}"
            )
        data_range = 255.0
    if data_range <= 0:
        raise ValueError(f"`data_range` must be positive, got {data_range}")
    return a.astype(np.float64), b.astype(np.float64), float(data_range)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> np.ndarray | float:
    """Peak signal-to-noise ratio of each image, in dB.

    Args:
        a: ``(..., H, W, C)`` images, uint8 or float.
        b: Images of the same shape.
        data_range: The value range (255 for uint8, 2 for ``[-1, 1]``); inferred only for uint8.

    Returns:
        A float for one ``(H, W, C)`` image, else an array of the leading shape ``(...)``; ``inf`` where the
        images are identical.
    """
    a, b, data_range = _as_float_pair(a, b, data_range)
    if a.ndim < 3:
        raise ValueError(f"images must be (..., H, W, C), got shape {a.shape}")
    mse = np.square(a - b).mean(axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        value = 10.0 * np.log10(data_range**2 / mse)
    return float(value) if value.ndim == 0 else value


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray, data_range: float | None = None) -> float:
    """PSNR over the masked pixels of all the images pooled, in dB.

    Whole-frame PSNR is dominated by a static background; this scores what moves (the robot, the objects).

    Args:
        a: ``(..., H, W, C)`` images, uint8 or float.
        b: Images of the same shape.
        mask: ``(..., H, W)`` boolean pixels to score.
        data_range: The value range (255 for uint8, 2 for ``[-1, 1]``); inferred only for uint8.

    Returns:
        The PSNR; ``nan`` if the mask is empty, ``inf`` if the masked pixels are identical.
    """
    a, b, data_range = _as_float_pair(a, b, data_range)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != a.shape[:-1]:
        raise ValueError(f"mask must be the images' shape without channels {a.shape[:-1]}, got {mask.shape}")
    if not mask.any():
        return float("nan")
    mse = np.square(a[mask] - b[mask]).mean()
    with np.errstate(divide="ignore"):
        return float(10.0 * np.log10(data_range**2 / mse))


def _gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> np.ndarray:
    # scipy.ndimage.gaussian_filter's kernel, which scikit-image uses: radius int(truncate * sigma + 0.5).
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    window = np.exp(-0.5 * (x / sigma) ** 2)
    return window / window.sum()


def _valid_filter(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 2D filtering of ``(..., H, W, C)`` over H and W, keeping only where the window fits.

    scikit-image filters with reflected borders and then crops ``(win - 1) // 2`` pixels on each side before
    averaging, so only the "valid" part matters and no border mode is needed here.
    """
    n = window.size
    h, w = x.shape[-3] - n + 1, x.shape[-2] - n + 1
    rows = sum(window[k] * x[..., k : k + h, :, :] for k in range(n))
    return sum(window[k] * rows[..., :, k : k + w, :] for k in range(n))


def ssim(
    a: np.ndarray, b: np.ndarray, data_range: float | None = None, gaussian_weights: bool = True
) -> np.ndarray | float:
    """Structural similarity of each image, averaged over pixels and channels.

    Args:
        a: ``(..., H, W, C)`` images, uint8 or float; H and W at least the window size (11, or 7).
        b: Images of the same shape.
        data_range: The value range (255 for uint8, 2 for ``[-1, 1]``); inferred only for uint8.
        gaussian_weights: The 11x11 Gaussian window (sigma 1.5, population covariance) of Wang et al.; if
            False, scikit-image's default 7x7 uniform window with the sample covariance.

    Returns:
        A float for one ``(H, W, C)`` image, else an array of the leading shape ``(...)``.
    """
    a, b, data_range = _as_float_pair(a, b, data_range)
    if gaussian_weights:
        window, cov_norm = _gaussian_window(), 1.0
    else:
        window = np.full(7, 1.0 / 7.0)
        cov_norm = 49.0 / 48.0
    if a.ndim < 3 or min(a.shape[-3:-1]) < window.size:
        raise ValueError(f"images must be (..., H, W, C) with H, W >= {window.size}, got shape {a.shape}")

    mu_a, mu_b = _valid_filter(a, window), _valid_filter(b, window)
    var_a = cov_norm * (_valid_filter(a * a, window) - mu_a * mu_a)
    var_b = cov_norm * (_valid_filter(b * b, window) - mu_b * mu_b)
    cov = cov_norm * (_valid_filter(a * b, window) - mu_a * mu_b)
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    value = ssim_map.mean(axis=(-3, -2, -1))
    return float(value) if value.ndim == 0 else value
