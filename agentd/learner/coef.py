"""Dual variables and adaptive penalties: the one reusable "coefficient" component (STYLE.md, omnisafe).

Two update rules share one container (named float values, saved with the checkpoint so a resumed
run continues with the same penalties):

* :class:`AdaptiveCoef` — DPO's β1, β2 (and IPPO-KL's β) follow the PPO-adaptive-KL rule
  (dpo.md §3.5, eq. 21)::

      if  D_KL^avg > d_target · δ:  β_j ← β_j · ω
      if  D_KL^avg < d_target / δ:  β_j ← β_j / ω

* :class:`Lagrange` — multipliers x_u ≥ 0 of cost constraints, one per constraint u, each the
  minimiser of the dual loss ``−x_u·(J_u − c_u)`` (J_u the mean episode cost, c_u its limit) by one
  optimiser step per update, then projected onto [0, upper] — omnisafe ``common/lagrange.py``.
  The gradient of that loss is −(J_u − c_u): a violated constraint raises x_u, slack lowers it.
  ``sgd`` is the textbook projected ascent x_u ← clip(x_u + lr·(J_u − c_u), 0, upper) (dec-mappo-l.md
  eq. 19, mafocops.md eq. 10); ``adam`` (torch.optim.Adam's rule and defaults, β = (0.9, 0.999),
  ε = 1e-8) moves x_u by about lr per update whatever the scale of the gap, which is why omnisafe's
  PPOLag / FOCOPS use it (lambda_lr 0.035): with SGD the step is tied to the cost's units, and
  SafePO's 1e-5 on (1 − γ)·gap leaves λ effectively constant (learner-audit.md Q2).
  DEC-MAPPO-L / MAPPO-L's λ_u and MAFOCOPS's ν_j are both this.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class Coefs:
    """A named group of float coefficients with checkpointable state."""

    def __init__(self, names: Sequence[str], init: float) -> None:
        self.values = {n: float(init) for n in names}

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def __len__(self) -> int:
        return len(self.values)

    def as_list(self) -> list[float]:
        return list(self.values.values())

    def state_dict(self) -> dict[str, Any]:
        return dict(self.values)

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if set(d) != set(self.values):
            raise ValueError(f"coefficient names {sorted(d)} != expected {sorted(self.values)}")
        self.values = {n: float(d[n]) for n in self.values}


class AdaptiveCoef(Coefs):
    """Coefficients scaled together by ω when a measured statistic leaves the band
    [target/δ, target·δ]; values are clamped to [lo, hi] (a numerical guard, not in the paper:
    without a floor, repeated halving during KL≈0 stretches underflows to 0 and β could never
    grow again)."""

    def __init__(self, names: Sequence[str], init: float, target: float, delta: float,
                 omega: float, lo: float, hi: float) -> None:
        super().__init__(names, init)
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


LAGRANGE_OPTIMIZERS = ("adam", "sgd")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as omnisafe's Lagrange uses them


class Lagrange(Coefs):
    """Multipliers x_u ∈ [0, upper] (upper=None: no ceiling), each stepped by ``optimizer`` on the
    dual loss −x_u·gap_u; the optimiser's moments are part of the checkpointed state."""

    def __init__(self, names: Sequence[str], init: float, lr: float, optimizer: str = "adam",
                 upper: float | None = None) -> None:
        if init < 0 or (upper is not None and init > upper):
            raise ValueError(f"initial multiplier {init} outside [0, {upper}]")
        if optimizer not in LAGRANGE_OPTIMIZERS:
            raise ValueError(f"lambda_optimizer must be one of {', '.join(LAGRANGE_OPTIMIZERS)}; got {optimizer!r}")
        super().__init__(names, init)
        self.lr, self.upper, self.optimizer = float(lr), upper, optimizer
        self._reset_moments()

    def _reset_moments(self) -> None:
        self.m = {n: 0.0 for n in self.values}
        self.v = {n: 0.0 for n in self.values}
        self.t = 0

    def step(self, gaps: Sequence[float]) -> dict[str, float]:
        """One optimiser step on −x_u·gap_u for every u, then the projection; ``gaps[u]`` > 0
        (constraint u violated) raises multiplier u. Returns the new values."""
        if len(gaps) != len(self.values):
            raise ValueError(f"expected {len(self.values)} constraint gaps, got {len(gaps)}")
        self.t += 1
        b1, b2 = ADAM_BETAS
        for n, gap in zip(list(self.values), gaps):
            grad = -float(gap)  # ∂(−x·gap)/∂x
            if self.optimizer == "sgd":
                delta = self.lr * grad
            else:
                self.m[n] = b1 * self.m[n] + (1 - b1) * grad
                self.v[n] = b2 * self.v[n] + (1 - b2) * grad * grad
                m_hat, v_hat = self.m[n] / (1 - b1 ** self.t), self.v[n] / (1 - b2 ** self.t)
                delta = self.lr * m_hat / (v_hat ** 0.5 + ADAM_EPS)
            x = max(0.0, self.values[n] - delta)
            self.values[n] = x if self.upper is None else min(self.upper, x)
        return dict(self.values)

    def state_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "m": dict(self.m), "v": dict(self.v), "t": self.t}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if "values" not in d:  # a checkpoint from before the optimiser: the multipliers alone
            super().load_state_dict(d)
            self._reset_moments()
            return
        super().load_state_dict(d["values"])
        self.m = {n: float(d["m"][n]) for n in self.values}
        self.v = {n: float(d["v"][n]) for n in self.values}
        self.t = int(d["t"])
