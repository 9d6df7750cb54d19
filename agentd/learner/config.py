"""Every hyperparameter of a learner in one dataclass, read top to bottom in the order it is used.

Defaults follow the DPO paper's shared IPPO/DPO settings (shared/papers/dpo.md, appendix B,
Table 2) unless a comment names another source, so a run with no overrides is the paper's setup.
Overrides arrive from the command line or a sweep as ``{field: value}``; :func:`apply_overrides`
casts each value to the field's type and rejects unknown keys, because a typo in a sweep must
fail loudly rather than silently run the defaults.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, get_type_hints


@dataclass
class LearnerConfig:
    # --- networks (built once, at construction) ---
    hidden: int = 128  # hidden units per layer (dpo.md Table 2: hidden size 128)
    hidden_layers: int = 2  # 2 hidden + 1 output = "3-layer MLP", ReLU (dpo.md Table 2)
    init_log_std: float = -0.5  # continuous actions: initial state-independent log σ (σ≈0.61)

    # --- acting (every env step) ---
    normalize_obs: bool = True  # running mean/var normalisation of actor and critic inputs, clip ±10
    rollout_len: int = 128  # env steps per env copy between updates; a batch is rollout_len·E samples

    # --- returns and advantages (start of update) ---
    gamma: float = 0.99  # discount (CleanRL / MAPPO default)
    gae_lambda: float = 0.95  # GAE λ (CleanRL / MAPPO default)

    # --- optimisation (the epoch × minibatch loop) ---
    epochs: int = 15  # passes over each batch (dpo.md Table 2, after MAPPO, Yu et al. 2021)
    minibatches: int = 4  # minibatches per epoch (CleanRL default)
    lr_actor: float = 5e-4  # Adam (dpo.md Table 2: actor_lr)
    lr_critic: float = 5e-4  # Adam (dpo.md Table 2: critic_lr)
    max_grad_norm: float = 10.0  # global grad-norm clip, actor and critic separately (MAPPO default)
    ent_coef: float = 0.01  # entropy bonus weight, both algorithms (MAPPO default)

    # --- policy loss: IPPO ---
    clip: float = 0.2  # PPO ratio clip ε (dpo.md Table 2, after Schulman et al. 2017); DPO logs clip_frac with it

    # --- policy loss: DPO (dpo.md §3.5, eq. 20–21) ---
    beta_init: float = 0.01  # initial β1 = β2 (dpo.md Table 2)
    d_target: float = 0.1  # KL ruler: 0.1 tabular game, 0.01 MPE, 0.001 MaMuJoCo, 0.02 SMAC (dpo.md App. B)
    dpo_delta: float = 1.5  # tolerance band δ around d_target (dpo.md §3.5, as in PPO)
    dpo_omega: float = 2.0  # β multiplier ω (dpo.md §3.5, as in PPO)
    beta_min: float = 1e-6  # not in the paper: floor so β can recover after long KL≈0 stretches (β/ω^k underflows)
    beta_max: float = 1e6  # not in the paper: ceiling, symmetric guard against overflow

    # --- checkpoints ---
    keep_checkpoints: int = 3  # newest files kept in the checkpoint directory

    def __post_init__(self) -> None:
        """Reject values that would crash or silently misbehave far from where they were set."""
        positive_int = ("hidden", "rollout_len", "epochs", "minibatches", "keep_checkpoints")
        for name in positive_int:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_layers < 0:
            raise ValueError(f"hidden_layers must be >= 0, got {self.hidden_layers}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        positive = ("lr_actor", "lr_critic", "max_grad_norm", "clip", "d_target", "beta_min", "beta_max")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.dpo_delta <= 1.0 or self.dpo_omega <= 1.0:
            raise ValueError("dpo_delta and dpo_omega must be > 1")
        if not self.beta_min <= self.beta_init <= self.beta_max:
            raise ValueError(f"beta_init must lie in [beta_min, beta_max], got {self.beta_init}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _cast(name: str, value: Any, typ: type) -> Any:
    """Loose cast: "3" -> 3, 3.0 -> 3, "false" -> False; 2.5 for an int field is an error."""
    try:
        if typ is bool:
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise ValueError
        if typ is int:
            f = float(value)
            if not f.is_integer():
                raise ValueError
            return int(f)
        return typ(value)
    except (TypeError, ValueError):
        raise ValueError(f"override {name}={value!r} is not a valid {typ.__name__}") from None


def apply_overrides(cfg: LearnerConfig, overrides: dict[str, Any] | None) -> LearnerConfig:
    """Return a copy of ``cfg`` with ``overrides`` applied; unknown keys raise ValueError naming them."""
    if not overrides:
        return dataclasses.replace(cfg)
    hints = get_type_hints(LearnerConfig)
    unknown = sorted(set(overrides) - set(hints))
    if unknown:
        raise ValueError(
            f"unknown learner override(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(f.name for f in dataclasses.fields(LearnerConfig))}"
        )
    cast = {k: _cast(k, v, hints[k]) for k, v in overrides.items()}
    return dataclasses.replace(cfg, **cast)
