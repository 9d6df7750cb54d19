"""A minimal Adam, so an agent process never imports ``torch._dynamo``.

Why not ``torch.optim.Adam``: its ``add_param_group`` is wrapped in ``torch._disable_dynamo``,
which imports torch._dynamo and sympy on first use: ~1.2 s of CPU and ~70 MiB RSS per agent
process (shared/PERF.md, second pass), i.e. >1 GiB for 16 agents, for machinery a CPU learner
never uses. Nothing else on the learner path imports it. The arithmetic is the one of
``torch.optim.Adam`` (non-foreach, no amsgrad, no weight decay), checked step by step in
tests/test_learner.py.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


class Adam:
    """Adam (Kingma & Ba 2015) over a fixed list of parameters that all receive a gradient
    every step (true for actor and critic here: one shared step counter suffices)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.t = 0
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_`` (2-norm) over this optimiser's parameters, by the same
        foreach calls it makes on CPU tensors, so the result is bitwise the same; without its
        per-call parameter listing and device grouping: clip + step 213 → 129 µs, ~1.6 % of an
        update (bench/NOTES.md §5). Returns the total norm before clipping."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.tensor(0.0)
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
        torch._foreach_mul_(grads, torch.clamp(float(max_norm) / (total + 1e-6), max=1.0))
        return total

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step, each formula applied to every parameter by one foreach call (on CPU a
        C++ loop of the same per-tensor kernels: bitwise what a Python loop over them gives)."""
        b1, b2 = self.betas
        self.t += 1
        step_size = self.lr / (1.0 - b1 ** self.t)
        bc2_sqrt = math.sqrt(1.0 - b2 ** self.t)
        live = [(p, p.grad, m, v) for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq) if p.grad is not None]
        if not live:
            return
        params, grads, exp_avg, exp_avg_sq = (list(x) for x in zip(*live))
        torch._foreach_lerp_(exp_avg, grads, 1.0 - b1)
        torch._foreach_mul_(exp_avg_sq, b2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1.0 - b2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "t": self.t,
                "exp_avg": [m.clone() for m in self.exp_avg],
                "exp_avg_sq": [v.clone() for v in self.exp_avg_sq]}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if len(d["exp_avg"]) != len(self.params) or any(
                m.shape != p.shape for m, p in zip(d["exp_avg"], self.params)):
            raise ValueError("optimiser state does not match the parameters' shapes")
        self.lr, self.betas, self.eps = float(d["lr"]), (float(d["betas"][0]), float(d["betas"][1])), float(d["eps"])
        self.t = int(d["t"])
        for dst, src in zip(self.exp_avg + self.exp_avg_sq, list(d["exp_avg"]) + list(d["exp_avg_sq"])):
            dst.copy_(src)
