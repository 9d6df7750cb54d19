"""Action distributions as plain tensor formulas, without ``torch.distributions``.

Why: building Distribution objects on the acting path costs ~320–420 µs per batch-1 step, several
times the network itself (shared/PERF.md, torch section). Every distribution is described by one
flat parameter tensor ``params [B, P]`` so the rollout buffer can store the *old* distribution as a
single array and DPO can compute the exact per-state KL(π_old(·|s) ‖ π_new(·|s)) from it.

- Categorical: ``params`` = normalised logits (log-probabilities) ``[B, n_actions]``.
- Diagonal Gaussian: ``params`` = ``cat(mean, log_std)`` ``[B, 2·act_dim]``.

Action masks (a task whose STEP says which actions are available, envserver/tasks/base.py): a
masked categorical gives unavailable actions the log-probability ``MASKED_LOGP`` (probability
exactly 0 in float32, so they are never sampled) and renormalises the rest. The stored old
parameters then carry the mask as their support, and :meth:`Categorical.restrict` puts a new
policy on that same support, so ratios, entropies and KLs of an update compare the two
distributions over the actions that were available, as MAPPO's SMAC code does with its stored
``available_actions``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# the log-probability of a masked-out action: exp() is 0 in float32, yet finite, so that 0·log 0 terms
# of the entropy and KL are 0, not NaN; any policy's real log-probability is far above half of it
MASKED_LOGP = -1e9


class Categorical:
    """Categorical over ``n`` actions; actions are int64 ``[B]``."""

    @staticmethod
    def sample(params: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw with the learner's own generator (never the global RNG), return (action, log-prob)."""
        action = torch.multinomial(params.exp(), 1, generator=gen).squeeze(-1)
        return action, params.gather(-1, action.unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def masked(params: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``params`` renormalised over the actions where ``mask`` [B, n] (bool) is true."""
        return torch.log_softmax(params.masked_fill(~mask, MASKED_LOGP), -1)

    @staticmethod
    def restrict(params: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """``params`` on the support of the stored masked distribution ``old`` (see the module docstring)."""
        return Categorical.masked(params, old > 0.5 * MASKED_LOGP)

    @staticmethod
    def log_prob(params: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return params.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def entropy(params: torch.Tensor) -> torch.Tensor:
        return -(params.exp() * params).sum(-1)

    @staticmethod
    def kl(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """Exact KL(old ‖ new) per row: Σ_a p_old(a)·(log p_old(a) − log p_new(a)).

        Clamped at 0: near old = new, float32 rounding makes the sum slightly negative, and DPO's
        sqrt(KL + 1e-8) of a negative number is NaN."""
        return Categorical.kl_unclamped(old, new).clamp_min(0.0)

    @staticmethod
    def kl_unclamped(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """The same formula without the clamp, for second derivatives at old = new (MACPO's
        Fisher-vector products): the clamp would zero the gradient wherever rounding went below 0."""
        return (old.exp() * (old - new)).sum(-1)


class DiagGaussian:
    """Diagonal Gaussian over ``d`` dims; actions are float ``[B, d]`` (unclipped samples)."""

    @staticmethod
    def split(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = params.shape[-1] // 2
        return params[..., :d], params[..., d:]

    @staticmethod
    def sample(params: np.ndarray, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw with the learner's own generator; (action, log-prob). Acting only, so numpy in and out:
        a third of torch's per-operator cost at batch E; the noise still comes from ``gen``."""
        d = params.shape[-1] // 2
        mean, log_std = params[..., :d], params[..., d:]
        eps = torch.randn(mean.shape, generator=gen, dtype=torch.float32).numpy()
        action = mean + np.exp(log_std) * eps
        # (x−μ)/σ is eps itself: no division, and exactly the formula log_prob() uses.
        logp = (-0.5 * (eps * eps) - log_std - _HALF_LOG_2PI).sum(-1)
        return action, logp

    @staticmethod
    def log_prob(params: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        mean, log_std = DiagGaussian.split(params)
        z = (action - mean) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - _HALF_LOG_2PI).sum(-1)

    @staticmethod
    def entropy(params: torch.Tensor) -> torch.Tensor:
        _, log_std = DiagGaussian.split(params)
        return (log_std + 0.5 + _HALF_LOG_2PI).sum(-1)

    @staticmethod
    def kl(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """Exact KL(old ‖ new) per row, summed over dims:
        log(σ_new/σ_old) + (σ_old² + (μ_old − μ_new)²) / (2σ_new²) − ½, clamped at 0 (rounding)."""
        return DiagGaussian.kl_unclamped(old, new).clamp_min(0.0)

    @staticmethod
    def kl_unclamped(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """:meth:`kl` without the clamp (see Categorical.kl_unclamped)."""
        mu0, ls0 = DiagGaussian.split(old)
        mu1, ls1 = DiagGaussian.split(new)
        var_ratio = torch.exp(2.0 * (ls0 - ls1))
        mahal = (mu0 - mu1).square() * torch.exp(-2.0 * ls1)
        return (ls1 - ls0 + 0.5 * (var_ratio + mahal) - 0.5).sum(-1)
