"""Adaptive penalty coefficients: the one reusable "dual variable" component (STYLE.md, omnisafe).

DPO's β1, β2 follow the PPO-adaptive-KL rule (dpo.md §3.5, eq. 21)::

    if  D_KL^avg > d_target · δ:  β_j ← β_j · ω
    if  D_KL^avg < d_target / δ:  β_j ← β_j / ω

Lagrangian learners (λ, ν) can subclass this with their own ``step``; state travels with the
checkpoint so a resumed run continues with the same penalties.
"""
from __future__ import annotations


class AdaptiveCoef:
    """A named group of coefficients scaled together by ω when a measured statistic leaves the
    band [target/δ, target·δ]; values are clamped to [lo, hi] (a numerical guard, not in the
    paper: without a floor, repeated halving during KL≈0 stretches underflows to 0 and β could
    never grow again)."""

    def __init__(self, names: tuple[str, ...], init: float, target: float, delta: float,
                 omega: float, lo: float, hi: float) -> None:
        self.values = {n: float(init) for n in names}
        self.target, self.delta, self.omega = target, delta, omega
        self.lo, self.hi = lo, hi

    def step(self, measured: float) -> dict[str, float]:
        """Apply eq. 21 once for ``measured`` (the batch-mean KL after the update); return the
        coefficients the next update will use."""
        if measured > self.target * self.delta:
            factor = self.omega
        elif measured < self.target / self.delta:
            factor = 1.0 / self.omega
        else:
            factor = 1.0
        for n, v in self.values.items():
            self.values[n] = min(self.hi, max(self.lo, v * factor))
        return dict(self.values)

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def state_dict(self) -> dict[str, float]:
        return dict(self.values)

    def load_state_dict(self, d: dict[str, float]) -> None:
        if set(d) != set(self.values):
            raise ValueError(f"coefficient names {sorted(d)} != expected {sorted(self.values)}")
        self.values = {n: float(v) for n, v in d.items()}
