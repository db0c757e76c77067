"""The optimality measures every report uses (DESIGN.md section 5), in one place."""

from __future__ import annotations

import numpy as np


def ratio_to_optimum(policy_return, hindsight_return):
    """``1 - (G_h - G_p) / |G_h|``: 1 at the optimum, below it for worse returns; NaN where ``G_h == 0``.

    Reads the same whether returns are profits or net costs. Scalars give a float, arrays an array.
    """
    p, h = np.asarray(policy_return, dtype=float), np.asarray(hindsight_return, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(h == 0, np.nan, 1.0 - (h - p) / np.abs(h))
    return float(ratio) if ratio.ndim == 0 else ratio


def relative_gap(bound: float, objective: float) -> float:
    """``(bound - objective) / max(|objective|, 1e-9)``: the solver's relative optimality gap (we maximize)."""
    return float((bound - objective) / max(abs(objective), 1e-9))


def bootstrap_mean_ci(values: np.ndarray, rng: np.random.Generator, resamples: int, confidence: float):
    """Percentile bootstrap interval ``(low, high)`` of the mean of ``values`` (NaNs dropped)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def interquartile_mean(values: np.ndarray) -> float:
    values = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
    if values.size == 0:
        return np.nan
    cut = int(0.25 * values.size)
    return float(values[cut : values.size - cut].mean())
