r"""General utilities f_i of a local occupancy and their gradients, the shadow rewards
(scalable-general-utilities.md §2, Lemma 1): what the shadow-reward learner (shadow_pg.py) optimises.

λ_i [k_s, k_a] is agent i's local state-action occupancy (eq. 4), normalised so that
(1 − γ)·Σ λ_i = 1; d_i(x) = (1 − γ)·Σ_a λ_i(x, a) its state occupancy. Each function returns
(f_i(λ_i), ∇_{λ_i} f_i [k_s, k_a]); the gradient is constant along a, since both utilities depend
on λ_i only through d_i.

Pure numpy and free of the tasks: the exact solver of the networked MDP
(envserver/tasks/networked_mdp.py ``ExactSolver.utility``) takes any such f as an argument, so the
learner never imports a task and the task never imports the learner.
"""
from __future__ import annotations

import numpy as np


def entropy_utility(lam_i: np.ndarray, gamma: float, floor: float = 1e-6) -> tuple[float, np.ndarray]:
    """f_i(λ_i) = −Σ_x d_i(x)·log d_i(x) (max-entropy exploration, §2) and its gradient
    −(1−γ)·(log d_i(x) + 1). ``floor`` keeps the gradient bounded (Assumption 2) where an occupancy is ~0."""
    d = np.maximum((1.0 - gamma) * lam_i.sum(axis=1), floor)
    value = float(-(d * np.log(d)).sum())
    grad = np.repeat((-(1.0 - gamma) * (np.log(d) + 1.0))[:, None], lam_i.shape[1], axis=1)
    return value, grad


def target_utility(lam_i: np.ndarray, gamma: float, target: np.ndarray) -> tuple[float, np.ndarray]:
    """f_i(λ_i) = −Σ_x (d_i(x) − d*(x))², d* = ``target`` [k_s], and its gradient −2(1−γ)·(d_i(x) − d*(x))."""
    diff = (1.0 - gamma) * lam_i.sum(axis=1) - target
    grad = np.repeat((-2.0 * (1.0 - gamma) * diff)[:, None], lam_i.shape[1], axis=1)
    return float(-(diff ** 2).sum()), grad
