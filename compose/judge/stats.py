"""Means with 95 % confidence intervals, for evaluation episodes and for seeds of one config.

The interval is Student's t: evaluation uses ~10 episodes and a comparison 3–5 seeds, where the
normal 1.96 would be far too narrow (t at 2 degrees of freedom is 4.30). The quantile comes from
the t density integrated numerically (Simpson) and inverted by bisection, because scipy is not a
dependency of khop.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np


def t_cdf(x: float, df: int) -> float:
    """P(T ≤ x) for Student's t with ``df`` degrees of freedom (x ≥ 0 is all the quantile needs)."""
    if x <= 0:
        return 0.5 if x == 0 else 1.0 - t_cdf(-x, df)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    n = 4000  # even: Simpson's rule; the density is smooth, so the error is far below 1e-9 for x ≤ 100
    u = np.linspace(0.0, x, n + 1)
    f = np.exp(log_c - (df + 1) / 2 * np.log1p(u * u / df))
    w = np.ones(n + 1)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return 0.5 + float(f @ w) * (x / n) / 3.0


def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p in (0.5, 1)) of Student's t, to ~1e-9."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    if df == 1:  # Cauchy: closed form (its tail is too heavy for a finite bracket)
        return math.tan(math.pi * (p - 0.5))
    lo, hi = 0.0, 100.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


def mean_ci(values: Iterable[float]) -> dict[str, float | int | None]:
    """``{"mean", "ci95", "std", "min", "max", "n"}``: ci95 is the half-width of the 95 % interval
    of the mean (None for a single value: one sample has no spread); std is the sample std."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "ci95": None, "std": None, "min": None, "max": None, "n": 0}
    std = float(v.std(ddof=1)) if v.size > 1 else None
    ci = t_quantile(0.975, v.size - 1) * std / math.sqrt(v.size) if std is not None else None
    return {"mean": float(v.mean()), "ci95": ci, "std": std, "min": float(v.min()), "max": float(v.max()),
            "n": int(v.size)}
