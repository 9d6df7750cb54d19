"""Actor, critic and the running input normaliser.

The actor sees only the agent's local observation; the critic sees the κ-hop input the agent
assembled from its neighbours. Both are plain MLPs (dpo.md Table 2: 3 layers, 128 units, ReLU) with
orthogonal init (gain √2 hidden, 0.01 actor head so the first policy is near-uniform / near the
centre, 1 critic head), drawn from the learner's own generator so that two learners with the same
seed are identical and the global torch RNG is never touched (several learners may share a process
in the serial reference mode).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class RunningNorm:
    """Running mean/variance (parallel Welford merge, Chan et al.) with output clipped to ±clip.

    Kept in float64 numpy because it runs on every acting step and is cheaper there than in torch.
    Starts at mean 0, var 1 with a tiny pseudo-count (as gymnasium's RunningMeanStd) so the first
    batch already normalises sensibly.
    """

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8) -> None:
        self.mean = np.zeros(dim, dtype=np.float64)
        self.var = np.ones(dim, dtype=np.float64)
        self.count = 1e-4
        self.clip = clip
        self.eps = eps
        self._refresh()

    def _refresh(self) -> None:
        """Cache float32 shift/scale so normalize() is three ufuncs on the acting path."""
        self._shift = self.mean.astype(np.float32)
        self._scale = (1.0 / np.sqrt(self.var + self.eps)).astype(np.float32)

    def update(self, x: np.ndarray) -> None:
        """Merge a batch ``x [B, dim]`` into the running statistics (ufuncs called directly:
        np.mean/np.var wrappers cost more than the arithmetic at B ≈ 1–32)."""
        b = x.shape[0]
        if b == 0:
            return
        xs = x.astype(np.float64)
        if b == 1:
            b_mean, b_m2 = xs[0], 0.0
        else:
            b_mean = np.add.reduce(xs, axis=0) / b
            dev = xs - b_mean
            b_m2 = np.add.reduce(dev * dev, axis=0)
        delta = b_mean - self.mean
        total = self.count + b
        self.mean = self.mean + delta * (b / total)
        self.var = (self.var * self.count + b_m2 + delta * delta * (self.count * b / total)) / total
        self.count = total
        self._refresh()

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """(x − mean)/sqrt(var + eps), clipped to ±clip, float32; does not update the statistics."""
        z = np.subtract(x, self._shift, dtype=np.float32)
        np.multiply(z, self._scale, out=z)
        np.maximum(z, -self.clip, out=z)  # ufuncs, not np.clip: its wrapper costs more at B ≈ 1
        return np.minimum(z, self.clip, out=z)

    def state_dict(self) -> dict:
        return {"mean": torch.from_numpy(self.mean.copy()), "var": torch.from_numpy(self.var.copy()),
                "count": float(self.count)}

    def load_state_dict(self, d: dict) -> None:
        self.mean = np.asarray(d["mean"], dtype=np.float64).copy()
        self.var = np.asarray(d["var"], dtype=np.float64).copy()
        self.count = float(d["count"])
        self._refresh()


def update_and_normalize(norms: Sequence[RunningNorm], xs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Merge each batch ``xs[k]`` into ``norms[k]`` and return the batches normalised with the merged
    statistics — what ``update`` then ``normalize`` on each does, for normalisers that have seen the
    same number of rows (an agent's observation and critic normalisers, updated together on every
    acting step). Their columns side by side make one normaliser and go through one set of numpy
    calls (~25 instead of ~45 per acting step, bench/NOTES.md §19); every operation works column by
    column, so statistics and outputs are bit-identical to the one-by-one calls (tests/test_learner.py).
    The normalised batches returned are column views of one array."""
    b = xs[0].shape[0]
    first = norms[0]
    if b == 0 or any(x.shape[0] != b or n.count != first.count or n.clip != first.clip or n.eps != first.eps
                     for n, x in zip(norms, xs)):
        for n, x in zip(norms, xs):
            n.update(x)
        return [n.normalize(x) for n, x in zip(norms, xs)]
    joint = RunningNorm.__new__(RunningNorm)
    joint.mean = np.concatenate([n.mean for n in norms])
    joint.var = np.concatenate([n.var for n in norms])
    joint.count, joint.clip, joint.eps = first.count, first.clip, first.eps
    x = np.concatenate(xs, axis=1)
    joint.update(x)
    z = joint.normalize(x)
    out, start = [], 0
    for n, xk in zip(norms, xs):
        cols = slice(start, start + xk.shape[1])
        n.mean, n.var, n.count = joint.mean[cols], joint.var[cols], joint.count
        n._shift, n._scale = joint._shift[cols], joint._scale[cols]
        out.append(z[:, cols])
        start = cols.stop
    return out


class MLP(nn.Module):
    """Linear layers with ReLU between them; forward via ``F.linear`` to skip per-module call
    overhead on the batch-of-E acting path (~33 vs ~55 µs per forward, shared/PERF.md)."""

    def __init__(self, sizes: list[int], head_gain: float, gen: torch.Generator) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for i, lin in enumerate(self.layers):
            gain = head_gain if i == len(self.layers) - 1 else math.sqrt(2.0)
            nn.init.orthogonal_(lin.weight, gain=gain, generator=gen)
            nn.init.zeros_(lin.bias)
        self._np_views: list[tuple[np.ndarray, np.ndarray]] | None = None  # see infer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, lin in enumerate(self.layers):
            x = F.linear(x, lin.weight, lin.bias)
            if i < last:
                x = torch.relu(x)
        return x

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The same function as :meth:`forward`, in numpy, for acting: at a batch of E ≈ 8 rows torch's
        per-operator dispatch costs three times the arithmetic (a 2×128 actor: ~70 µs with torch,
        ~22 µs here, bench/NOTES.md §19). It reads the parameters through numpy views of their
        storage, which every change of the weights writes in place (the optimiser step, a loaded
        checkpoint, MACPO's line search), so acting always sees the current policy
        (tests/test_learner.py checks after an update and a load). Results agree with
        :meth:`forward` to float32 rounding (the BLAS kernels differ), not bit for bit."""
        if self._np_views is None:
            self._np_views = [(lin.weight.detach().numpy().T, lin.bias.detach().numpy()) for lin in self.layers]
        last = len(self._np_views) - 1
        for i, (w_t, b) in enumerate(self._np_views):
            x = x @ w_t
            x += b
            if i < last:
                np.maximum(x, 0.0, out=x)
        return x


class Actor(nn.Module):
    """The actor's input (own observation or κ-hop rows) → flat distribution parameters (see
    dists.py): normalised logits for discrete actions, ``cat(mean, log_std)`` with a
    state-independent log σ for continuous ones."""

    def __init__(self, obs_dim: int, out_dim: int, discrete: bool, hidden: int, layers: int,
                 init_log_std: float, gen: torch.Generator) -> None:
        super().__init__()
        self.discrete = discrete
        self.body = MLP([obs_dim] + [hidden] * layers + [out_dim], head_gain=0.01, gen=gen)
        if not discrete:
            self.log_std = nn.Parameter(torch.full((out_dim,), float(init_log_std)))
        self._log_std_view: np.ndarray | None = None  # see infer()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.body.forward(obs)  # .forward: skip the hook machinery of a nested __call__
        if self.discrete:
            return torch.log_softmax(out, dim=-1)
        return torch.cat([out, self.log_std.expand_as(out)], dim=-1)

    def infer(self, obs: np.ndarray) -> np.ndarray:
        """:meth:`forward` for acting and playing, as numpy: its network runs in numpy (:meth:`MLP.infer`),
        and it is never differentiated."""
        out = self.body.infer(obs)
        if self.discrete:
            return torch.log_softmax(torch.from_numpy(out), dim=-1).numpy()
        d = out.shape[1]
        params = np.empty((out.shape[0], 2 * d), dtype=np.float32)
        params[:, :d] = out
        if self._log_std_view is None:  # a view of the parameter, written in place like the weights (MLP.infer)
            self._log_std_view = self.log_std.detach().numpy()
        params[:, d:] = self._log_std_view
        return params


class Critic(nn.Module):
    """κ-hop critic input → V(s) ``[B]``."""

    def __init__(self, in_dim: int, hidden: int, layers: int, gen: torch.Generator) -> None:
        super().__init__()
        self.body = MLP([in_dim] + [hidden] * layers + [1], head_gain=1.0, gen=gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward(x).squeeze(-1)
