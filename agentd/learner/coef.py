"""Dual variables and adaptive penalties: the one reusable "coefficient" component (STYLE.md, omnisafe).

Two update rules share one container (named float values, saved with the checkpoint so a resumed
run continues with the same penalties):

* :class:`AdaptiveCoef` — DPO's β1, β2 (and IPPO-KL's β) follow the PPO-adaptive-KL rule
  (dpo.md §3.5, eq. 21)::

      if  D_KL^avg > d_target · δ:  β_j ← β_j · ω
      if  D_KL^avg < d_target / δ:  β_j ← β_j / ω

* :class:`Lagrange` — multipliers of cost constraints by projected (sub)gradient ascent on the
  dual, one per constraint u::

      x_u ← clip(x_u + lr · g_u, 0, upper)

  DEC-MAPPO-L / MAPPO-L's λ_u (dec-mappo-l.md eq. 19: ∂/∂λ_u of the Lagrangian at θ_old is
  −d_u, so ascent on the penalty is +lr·d_u, upper = ∞) and MAFOCOPS's ν_j (mafocops.md eq. 10:
  ν_j ← proj_[0, ν_max](ν_j − α(c_j − J_j)), i.e. g = J_j − c_j, upper = ν_max) are both this.
"""
from __future__ import annotations

from collections.abc import Sequence


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

    def state_dict(self) -> dict[str, float]:
        return dict(self.values)

    def load_state_dict(self, d: dict[str, float]) -> None:
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


class Lagrange(Coefs):
    """Multipliers x_u ∈ [0, upper] (upper=None: no ceiling) updated by projected ascent
    ``x_u ← clip(x_u + lr·g_u, 0, upper)``, one ``g_u`` per named multiplier, in name order."""

    def __init__(self, names: Sequence[str], init: float, lr: float, upper: float | None = None) -> None:
        if init < 0 or (upper is not None and init > upper):
            raise ValueError(f"initial multiplier {init} outside [0, {upper}]")
        super().__init__(names, init)
        self.lr, self.upper = float(lr), upper

    def step(self, grads: Sequence[float]) -> dict[str, float]:
        """One projected step; ``grads[u]`` > 0 (constraint u violated) raises multiplier u."""
        if len(grads) != len(self.values):
            raise ValueError(f"expected {len(self.values)} constraint gaps, got {len(grads)}")
        for (n, v), g in zip(list(self.values.items()), grads):
            x = max(0.0, v + self.lr * float(g))
            self.values[n] = x if self.upper is None else min(self.upper, x)
        return dict(self.values)
