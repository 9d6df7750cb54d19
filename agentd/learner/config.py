"""Every hyperparameter of a learner in one dataclass, read top to bottom in the order it is used.

Defaults follow the DPO paper's shared IPPO/DPO settings (shared/papers/dpo.md, appendix B,
Table 2) unless a comment names another source, so a run with no overrides is the paper's setup.
An algorithm whose paper differs declares that in its class's ``defaults`` (applied by
``make_learner`` beneath the task-family defaults and the caller's overrides), each value cited.
Overrides arrive from the command line or a sweep as ``{field: value}``; :func:`apply_overrides`
casts each value to the field's type and rejects unknown keys, because a typo in a sweep must
fail loudly rather than silently run the defaults.

Every learner reads :data:`COMMON_KEYS`; each algorithm class declares the further fields it reads
in its ``config_keys`` (base.Learner), so ``learner_config`` can refuse a key the chosen algorithm
would ignore (a flat dataclass alone accepts ``focops_lam`` on ``dpo`` silently).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, get_type_hints

from .defaults import PRESETS


@dataclass
class LearnerConfig:
    # --- networks (built once, at construction) ---
    hidden: int = 128  # hidden units per layer (dpo.md Table 2: hidden size 128)
    hidden_layers: int = 2  # 2 hidden + 1 output = "3-layer MLP", ReLU (dpo.md Table 2)
    init_log_std: float = -0.5  # continuous actions: initial state-independent log σ (σ≈0.61)
    # continuous actions: clip the Gaussian sample into the action range before sending it (khop's choice), or
    # send the sample itself, as MACPO's runner (macpo/algorithms/utils/act.py) and SafePO's
    # (safepo/common/wrappers.py) do — the MuJoCo tasks then charge their control cost on the raw sample and
    # MuJoCo clamps the control (docs/tasks.md "Exactness"). The buffer keeps the raw sample either way.
    clip_actions: bool = True

    # --- acting (every env step) ---
    normalize_obs: bool = True  # running mean/var normalisation of actor and critic inputs, clip ±10
    # what the policy conditions on: "local" = the agent's own observation; "khop" = the critic's input
    # (κ-ball rows + presence bits), the localised policy π^i(·|s_{N_κ^i}) of dec-mappo-l.md eqs. 14/18/22 and
    # scalable-general-utilities.md "policy factorization"; each algorithm's default follows its paper
    actor_input: str = "local"
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

    # --- update order (sequential schemes: HAPPO, MAPPO-L, MAFOCOPS, MACPO) ---
    # "simultaneous": every agent updates on its own advantage. "sequential": agents update one after
    # another and agent k weights its reward advantage by the token M = prod_{j<k} pi_j^new/pi_j^old
    # (Kuba et al. 2022, HAPPO); only algorithms that support it accept "sequential".
    update_order: str = "simultaneous"
    minibatch_size: int = 0  # > 0: samples per minibatch, overriding `minibatches` (MAFOCOPS Table 5: 256)

    # --- cost critics and Lagrange multipliers (DEC-MAPPO-L / MAPPO-L; MAFOCOPS's ν) ---
    # dec-mappo-l.md gives no rule, rate or initial value for λ (it defers to "the original MAPPO-L
    # implementation", whose λ is effectively a constant 0.78: learner-audit.md Q2). The defaults are
    # omnisafe's PPOLag (configs/on-policy/PPOLag.yaml), a dual variable that moves ~lr per update.
    lambda_optimizer: str = "adam"  # λ and ν: "adam" or "sgd" (omnisafe lambda_optimizer Adam; coef.Lagrange)
    lambda_init: float = 0.001  # initial λ_u (omnisafe PPOLag lagrangian_multiplier_init)
    lambda_lr: float = 0.035  # step size of λ_u on −λ_u·(J_u − c_u) (omnisafe PPOLag lambda_lr)
    lambda_max: float = 0.0  # ceiling of λ_u; 0 = none (omnisafe lagrangian_upper_bound, None for PPOLag)
    # how A and the A_u combine (lagrangian.py): "normalised" (Â − Σλ_u·Â_u)/(1 + Σλ_u), omnisafe PPOLag;
    # "plain" Â − Σλ_u·Â_u, SafePO / MACPO-repo MAPPO-L; "eq21" Â − Σλ_u·(Â_u + d_u), dec-mappo-l.md eq. 21 literally
    lagrangian_form: str = "normalised"
    # a named set of the values above reproducing a reference (defaults.PRESETS), e.g. "safepo" for SafePO's
    # MAPPO-Lag (λ ≈ constant 0.78); applied beneath explicit overrides
    preset: str = ""

    # --- MAFOCOPS (mafocops.md §4.3, eq. 10-11, Table 5) ---
    focops_lam: float = 2.2  # fixed temperature lambda (Table 5, Safe MAMuJoCo)
    focops_delta: float = 0.0125  # KL bound delta: per-state indicator and early stop (Table 5 kl-threshold)
    # ν_j is stepped like λ (lambda_optimizer); the paper's own rule, SGD with α = 5e-5 (Table 5 "nu lr"),
    # moves ν by ~1.8e-3 per update (learner-audit.md finding 8): it is the "mafocops-paper" preset
    nu_init: float = 0.001  # initial ν_j (omnisafe FOCOPS.yaml lagrangian_multiplier_init; the paper gives none)
    nu_lr: float = 0.035  # step size of ν_j (omnisafe FOCOPS.yaml lambda_lr, Adam)
    nu_max: float = 1.3  # projection bound of nu_j (Table 5)

    # --- MACPO trust region (safe-mamujoco.md §5.2/5.3; mafocops.md Table 5) ---
    trust_region_delta: float = 0.008  # KL threshold delta (mafocops Table 5, MACPO on Safe MAMuJoCo)
    cg_iters: int = 10  # conjugate-gradient iterations (SafePO macpo.py: nsteps=10)
    cg_damping: float = 0.1  # Fisher damping, F + 0.1 I (SafePO macpo.py fisher_vector_product)
    ls_steps: int = 10  # backtracking steps (§5.2 ls_step 10, §5.3 searching_steps 10)
    ls_decay: float = 0.5  # step shrink per backtrack (§5.2 line_search_fraction 0.5, §5.3 step_fraction 0.5)
    ls_fraction_coef: float = 0.3  # first tried fraction of the full step (mafocops Table 5 fraction coef)

    # --- off-policy baselines: IQL (discrete) and IDDPG (continuous), dpo.md App. B ---
    replay_size: int = 100_000  # transitions kept (PyMARL keeps 5000 episodes; we count transitions)
    batch_size: int = 256  # transitions per gradient step (not in the paper)
    learning_starts: int = 1000  # transitions stored before the first update (not in the paper)
    gradient_steps: int = 16  # gradient steps per update; an update every rollout_len lock steps
    target_update_every: int = 200  # IQL hard target copy, in gradient steps (PyMARL iql.yaml: 200)
    double_q: bool = True  # IQL Double-DQN target (PyMARL iql.yaml: double_q True)
    eps_start: float = 1.0  # IQL epsilon-greedy start (PyMARL iql.yaml)
    eps_finish: float = 0.05  # IQL epsilon floor (PyMARL iql.yaml)
    eps_anneal_steps: int = 50_000  # IQL linear anneal, in this agent's transitions (PyMARL: 50000)
    tau: float = 0.005  # IDDPG Polyak rate of both target networks (TD3 / SB3 default)
    expl_noise: float = 0.1  # IDDPG Gaussian noise sigma, as a fraction of the action half-range

    # --- shadow-reward truncated PG (scalable-general-utilities.md §3.4, Alg. 1) ---
    utility: str = "entropy"  # f_i of the local occupancy: "entropy" (max-entropy exploration), "linear"
    # (the task's reward), "target" (−Σ_x (d_i(x) − d*(x))², d* = utility_target)
    utility_target: str = ""  # "target": comma-separated d*(x) per local state, normalised; empty = uniform
    occupancy_floor: float = 1e-3  # entropy: d_i floored here so the shadow reward stays bounded (Assumption 2)
    occupancy: str = "discounted"  # λ̃_i and the gradient weight samples by γ^k, k = steps since the episode's start
    # (eq. 20, 21: the discounted occupancy from ξ); "stationary": unweighted, the rollout's visit frequencies

    # --- checkpoints ---
    keep_checkpoints: int = 3  # newest files kept in the checkpoint directory

    def __post_init__(self) -> None:
        """Reject values that would crash or silently misbehave far from where they were set."""
        positive_int = ("hidden", "rollout_len", "epochs", "minibatches", "keep_checkpoints", "cg_iters",
                        "ls_steps", "replay_size", "batch_size", "gradient_steps", "target_update_every")
        for name in positive_int:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("hidden_layers", "minibatch_size", "learning_starts", "eps_anneal_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda", "eps_start", "eps_finish", "tau", "ls_decay", "ls_fraction_coef"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        positive = ("lr_actor", "lr_critic", "max_grad_norm", "clip", "d_target", "beta_min", "beta_max",
                    "focops_lam", "focops_delta", "trust_region_delta")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("lambda_init", "lambda_lr", "lambda_max", "nu_init", "nu_lr", "nu_max", "cg_damping", "expl_noise", "ent_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.dpo_delta <= 1.0 or self.dpo_omega <= 1.0:
            raise ValueError("dpo_delta and dpo_omega must be > 1")
        if not self.beta_min <= self.beta_init <= self.beta_max:
            raise ValueError(f"beta_init must lie in [beta_min, beta_max], got {self.beta_init}")
        if self.lambda_max and self.lambda_init > self.lambda_max:
            raise ValueError(f"lambda_init must be <= lambda_max, got {self.lambda_init} > {self.lambda_max}")
        if not self.nu_init <= self.nu_max:
            raise ValueError(f"nu_init must be <= nu_max, got {self.nu_init} > {self.nu_max}")
        if not 0.0 < self.occupancy_floor < 1.0:
            raise ValueError(f"occupancy_floor must be in (0, 1), got {self.occupancy_floor}")
        choices = {"update_order": ("simultaneous", "sequential"),
                   "lambda_optimizer": ("adam", "sgd"), "lagrangian_form": ("normalised", "plain", "eq21"),
                   "actor_input": ("local", "khop"), "preset": ("", *PRESETS),
                   "utility": ("entropy", "linear", "target"), "occupancy": ("discounted", "stationary")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")


#: the fields every learner reads (networks, acting, discount, critic optimiser, checkpoints), the
#: preset selector and update_order (every learner checks it: "sequential" only where supported);
#: the rest belong to the algorithms that declare them (``Learner.config_keys``)
COMMON_KEYS: tuple[str, ...] = ("hidden", "hidden_layers", "normalize_obs", "actor_input", "rollout_len", "gamma",
                                "lr_critic", "max_grad_norm", "keep_checkpoints", "preset", "update_order")

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


def check_known(keys: Any) -> None:
    """Raise ValueError naming every key that is no LearnerConfig field (a typo)."""
    unknown = sorted(set(keys) - {f.name for f in dataclasses.fields(LearnerConfig)})
    if unknown:
        raise ValueError(
            f"unknown learner override(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(f.name for f in dataclasses.fields(LearnerConfig))}"
        )


def apply_overrides(cfg: LearnerConfig, overrides: dict[str, Any] | None) -> LearnerConfig:
    """Return a copy of ``cfg`` with ``overrides`` applied; unknown keys raise ValueError naming them."""
    if not overrides:
        return dataclasses.replace(cfg)
    check_known(overrides)
    hints = get_type_hints(LearnerConfig)
    cast = {k: _cast(k, v, hints[k]) for k, v in overrides.items()}
    return dataclasses.replace(cfg, **cast)
