"""One-Euro filtering of tracked keypoints (Casiez, Roussel & Vogel, CHI 2012).

Keypoints tracked from video (hands, robot joints detected in frames) jitter from frame to frame, and a
jittering skeleton prompt asks the world model for motion that never happened. The One-Euro filter is an
exponential smoother whose cutoff frequency rises with speed: at rest it smooths hard (low cutoff, little
jitter), in fast motion it follows closely (high cutoff, little lag). Two parameters matter:
``min_cutoff`` (Hz; lower = smoother at rest) and ``beta`` (how fast the cutoff grows with speed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class OneEuroFilter:
    """A One-Euro filter over arrays of any fixed shape (e.g. (K, 2) keypoints), element by element.

    Each element has its own speed estimate and cutoff, as in the paper. Non-finite inputs (a keypoint the
    tracker lost) pass through as NaN and restart that element's filter when it comes back, so a lost
    point never drags its neighbours in time.

    Args:
        frequency: Sampling rate (Hz) assumed when ``__call__`` gets no timestamp.
        min_cutoff: Cutoff frequency (Hz) at zero speed; lower is smoother and laggier.
        beta: Speed coefficient: the cutoff is ``min_cutoff + beta * |speed|``, with the speed in the
            sample's units per second, so its scale depends on them (pixels vs metres differ ~400x).
        d_cutoff: Cutoff frequency (Hz) of the low-pass filter on the speed estimate.

    Example:
        >>> f = OneEuroFilter(frequency=30.0, min_cutoff=1.0, beta=0.05)
        >>> smoothed = [f(kp) for kp in track]   # track: (T, K, 2)
    """

    frequency: float = 30.0
    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        for name in ("frequency", "min_cutoff", "d_cutoff"):
            v = getattr(self, name)
            if not (_is_real(v) and v > 0):
                raise ValueError(f"`{name}` must be a positive finite number (Hz), got {v!r}")
        if not (_is_real(self.beta) and self.beta >= 0):
            raise ValueError(f"`beta` must be a finite number >= 0, got {self.beta!r}")
        self.reset()

    def reset(self) -> None:
        """Forget the history: the next sample passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
        """Smoothing factor of a first-order low-pass with this cutoff (Hz), sampled every ``dt`` seconds."""
        tau = 1.0 / (2.0 * np.pi * np.asarray(cutoff, dtype=np.float64))
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float | None = None) -> np.ndarray:
        """Filter one sample.

        Args:
            x: The sample, an array of the same shape every call.
            t: Its timestamp in seconds; if None, samples are ``1 / frequency`` apart. Timestamps must
                increase strictly.

        Returns:
            The filtered sample, float64, same shape as ``x``.
        """
        x = np.asarray(x, dtype=np.float64)
        if self._x is not None and x.shape != self._x.shape:
            raise ValueError(f"sample shape changed from {self._x.shape} to {x.shape}; call reset() first")
        if t is not None and not math.isfinite(t):
            raise ValueError(f"timestamp `t` must be finite, got {t}")
        if self._x is None:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            self._t = t
            return self._x.copy()
        if t is None or self._t is None:
            dt = 1.0 / self.frequency
        else:
            dt = t - self._t
            if dt <= 0:
                raise ValueError(f"timestamps must increase strictly, got {t} after {self._t}")
        self._t = t
        finite = np.isfinite(x)
        fresh = finite & ~np.isfinite(self._x)  # reappeared after a gap: restart from the sample
        prev = np.where(fresh, x, self._x)
        dx = np.where(finite, (x - prev) / dt, 0.0)
        a_d = self._alpha(self.d_cutoff, dt)
        dx_hat = np.where(fresh, 0.0, self._dx + a_d * (dx - self._dx))
        a = self._alpha(self.min_cutoff + self.beta * np.abs(dx_hat), dt)
        x_hat = prev + a * (x - prev)
        self._x = np.where(finite, x_hat, np.nan)
        self._dx = np.where(finite, dx_hat, 0.0)
        return self._x.copy()


def _is_real(v: object) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, bool)
        and math.isfinite(float(v))
    )


def filter_track(
    track: np.ndarray,
    fps: float,
    timestamps: np.ndarray | None = None,
    *,
    min_cutoff: float = 1.0,
    beta: float = 0.0,
    d_cutoff: float = 1.0,
) -> np.ndarray:
    """One-Euro filter a whole track.

    Args:
        track: (T, ...) samples, e.g. (T, K, 2) keypoints in pixels or (T, K, 3) in metres.
        fps: Sampling rate of the track (Hz).
        timestamps: Optional (T,) strictly increasing times (s) for irregular sampling.
        min_cutoff, beta, d_cutoff: See :class:`OneEuroFilter`.

    Returns:
        (T, ...) float64 filtered track.
    """
    track = np.asarray(track, dtype=np.float64)
    if track.ndim < 1:
        raise ValueError(f"`track` must have a leading time axis, got a scalar of shape {track.shape}")
    if timestamps is not None and np.shape(timestamps) != (len(track),):
        raise ValueError(f"`timestamps` must have shape ({len(track)},), got {np.shape(timestamps)}")
    f = OneEuroFilter(frequency=fps, min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
    out = np.empty_like(track)
    for i, x in enumerate(track):
        out[i] = f(x, None if timestamps is None else float(timestamps[i]))
    return out
