"""The four benchmark tasks: small, CPU-only, deterministic given (seed, step).

Each task builds a :class:`Problem`: the live model, optimizer and loss weights of one run,
with a ``train_step(step)`` that draws its batch from ``step`` alone. Two copies of a problem
that take the same steps therefore see the same data, which is what lets the decision-quality
measure run "the other branch" from a decision point and compare like with like.

The tuned knob (``Task.knob``) is either the learning rate or the auxiliary loss weight; the
offline sweep searches one constant value of it in ``Task.space``, hottune moves it online.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn

from hotcb.actuators import loss_actuators, optimizer_actuators


class Problem:
    """One run's live training state. Subclasses define the data, the loss and the metrics."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    weights: dict | None = None

    def train_step(self, step: int) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(step)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def loss(self, step: int) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, step: int) -> dict:
        raise NotImplementedError

    def actuators(self) -> list:
        acts = optimizer_actuators(self.optimizer)
        if self.weights is not None:
            acts += loss_actuators(self.weights)
        return acts

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


def _gen(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


# -- T1: digits MLP, Adam ----------------------------------------------------------------------
@lru_cache(maxsize=1)
def _digits():
    from examples.digits import digits_tensors

    return digits_tensors(val_fraction=0.2, seed=0)


class DigitsProblem(Problem):
    batch_size = 64

    def __init__(self, seed: int, lr: float):
        from examples.digits import mlp

        torch.manual_seed(seed)
        (self.xt, self.yt), (self.xv, self.yv) = _digits()
        self.seed = seed
        self.model = mlp(64)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)

    def loss(self, step: int) -> torch.Tensor:
        idx = torch.randint(len(self.xt), (self.batch_size,), generator=_gen(self.seed, step))
        return nn.functional.cross_entropy(self.model(self.xt[idx]), self.yt[idx])

    @torch.no_grad()
    def evaluate(self, step: int) -> dict:
        logits = self.model(self.xv)
        loss = float(nn.functional.cross_entropy(logits, self.yv))
        return {"val/loss": loss, "val/acc": float((logits.argmax(1) == self.yv).float().mean())}


# -- T2: two-loss regression whose useful auxiliary task turns harmful -------------------------
class TwoLossProblem(Problem):
    """Task A (the objective) has 30 noisy samples in 40 dimensions; task B has fresh data and,
    until ``shift_step``, shares A's 4-d feature subspace, so weighting it up helps A. After the
    shift B's targets come from an unrelated subspace and the shared rank-4 trunk can serve only
    one of them: the best auxiliary weight drops from high to zero."""

    dim, rank, n_a = 40, 4, 30

    def __init__(self, seed: int, aux: float, shift_step: int, lr: float = 1e-2):
        g = torch.Generator().manual_seed(10_000 + seed)
        self.seed, self.shift_step = seed, shift_step
        self.basis_a = torch.randn(self.rank, self.dim, generator=g) / math.sqrt(self.dim)
        self.basis_b = torch.randn(self.rank, self.dim, generator=g) / math.sqrt(self.dim)
        self.head_a = torch.randn(self.rank, generator=g)
        self.head_b = torch.randn(self.rank, self.rank, generator=g)
        self.xa = torch.randn(self.n_a, self.dim, generator=g)
        self.ya = self._target_a(self.xa) + 0.3 * torch.randn(self.n_a, generator=g)
        self.xv = torch.randn(1000, self.dim, generator=g)
        self.yv = self._target_a(self.xv)
        self.scale = float(self.yv.var())  # val/loss is relative: 1.0 = predicting the mean
        torch.manual_seed(seed)
        self.model = nn.ModuleDict({
            "trunk": nn.Linear(self.dim, self.rank, bias=False),
            "a": nn.Linear(self.rank, 1),
            "b": nn.Linear(self.rank, self.rank),
        })
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.weights = {"main": 1.0, "aux": float(aux)}

    def _target_a(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.basis_a.T) @ self.head_a

    def _predict_a(self, x: torch.Tensor) -> torch.Tensor:
        return self.model["a"](self.model["trunk"](x)).squeeze(-1)

    def loss(self, step: int) -> torch.Tensor:
        g = _gen(self.seed, step)
        xb = torch.randn(64, self.dim, generator=g)
        basis = self.basis_a if step <= self.shift_step else self.basis_b
        yb = (xb @ basis.T) @ self.head_b + 0.1 * torch.randn(64, self.rank, generator=g)
        loss_a = nn.functional.mse_loss(self._predict_a(self.xa), self.ya)
        loss_b = nn.functional.mse_loss(self.model["b"](self.model["trunk"](xb)), yb)
        return self.weights["main"] * loss_a + self.weights["aux"] * loss_b

    @torch.no_grad()
    def evaluate(self, step: int) -> dict:
        return {"val/loss": float(nn.functional.mse_loss(self._predict_a(self.xv), self.yv)) / self.scale}


# -- T3: noisy quadratic model (short-horizon bias) ---------------------------------------------
class NoisyQuadratic(Problem):
    """``0.5 * sum(h_i w_i^2)`` with curvatures ``h_i = 1/i`` and gradient noise of variance
    ``h_i``, trained by SGD. Validation is the exact expected excess loss ``0.5 * sum(h_i w_i^2)``.
    A small lr lowers the noise floor at once but stalls the flat directions, so a short-horizon
    judge keeps cutting the lr; the long-horizon optimum keeps it much higher for longer."""

    dim = 100

    def __init__(self, seed: int, lr: float):
        self.seed = seed
        self.h = 1.0 / torch.arange(1, self.dim + 1, dtype=torch.float32)
        self.model = nn.Module()
        self.model.w = nn.Parameter(torch.ones(self.dim))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)

    def loss(self, step: int) -> torch.Tensor:
        noise = torch.randn(self.dim, generator=_gen(self.seed, step)) * self.h.sqrt()
        w = self.model.w
        return 0.5 * (self.h * w * w).sum() + (noise * w).sum()

    @torch.no_grad()
    def evaluate(self, step: int) -> dict:
        return {"val/loss": float(0.5 * (self.h * self.model.w**2).sum())}


def nqm_expected_loss(lrs: torch.Tensor, dim: int = NoisyQuadratic.dim) -> torch.Tensor:
    """Exact expected validation loss of the NQM after SGD with the per-step ``lrs``."""
    h = 1.0 / torch.arange(1, dim + 1, dtype=lrs.dtype)
    mean, var = torch.ones(dim, dtype=lrs.dtype), torch.zeros(dim, dtype=lrs.dtype)
    for lr in lrs:
        keep = 1.0 - lr * h
        mean = keep * mean
        var = keep * keep * var + lr * lr * h
    return 0.5 * (h * (mean * mean + var)).sum()


@lru_cache(maxsize=4)
def nqm_oracle_pieces(max_steps: int, pieces: int = 10) -> tuple[float, ...]:
    """The piecewise-constant lr schedule minimising the exact expected final loss."""
    log_lr = torch.full((pieces,), math.log(0.5), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([log_lr], lr=0.05)
    width = math.ceil(max_steps / pieces)
    for _ in range(150):
        opt.zero_grad()
        lrs = log_lr.exp().clamp(max=1.99).repeat_interleave(width)[:max_steps]
        nqm_expected_loss(lrs).backward()
        opt.step()
    return tuple(float(v) for v in log_lr.detach().exp().clamp(max=1.99))


# -- T4: triangle (the best lr follows a known schedule) -----------------------------------------
def triangle_curvature(step: int, max_steps: int, h_max: float = 10.0) -> float:
    frac = min(max(step / max_steps, 0.0), 1.0)
    return 1.0 + (h_max - 1.0) * (1.0 - abs(2.0 * frac - 1.0))


class Triangle(Problem):
    """A target moving at constant speed, chased by SGD on ``0.5 * h(t) * |w - c(t)|^2`` whose
    curvature ``h(t)`` rises from 1 to 10 and back (a triangle). The step ``lr = 1/h(t)`` lands
    exactly on the target, so that schedule is optimal at every step and regret is exact.
    Validation is ``0.5 * |w - c(t)|^2`` plus a floor of 1e-4, the oracle's loss, which keeps
    the metric positive (hottune's trend baseline works in log space)."""

    dim, speed, h_max, floor = 10, 0.01, 10.0, 1e-4

    def __init__(self, seed: int, lr: float, max_steps: int):
        g = torch.Generator().manual_seed(20_000 + seed)
        self.max_steps = max_steps
        self.c0 = torch.randn(self.dim, generator=g)
        direction = torch.randn(self.dim, generator=g)
        self.direction = direction / direction.norm()
        self.model = nn.Module()
        self.model.w = nn.Parameter(torch.zeros(self.dim))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)

    def curvature(self, step: int) -> float:
        return triangle_curvature(step, self.max_steps, self.h_max)

    def target(self, step: int) -> torch.Tensor:
        return self.c0 + self.speed * step * self.direction

    def loss(self, step: int) -> torch.Tensor:
        diff = self.model.w - self.target(step)
        return 0.5 * self.curvature(step) * (diff * diff).sum()

    @torch.no_grad()
    def evaluate(self, step: int) -> dict:
        diff = self.model.w - self.target(step)
        return {"val/loss": self.floor + float(0.5 * (diff * diff).sum())}


# -- the task table ------------------------------------------------------------------------------
LR_MULT = {"opt": {"mutations": {"lr_mult": {"bounds": [0.33, 3.0]}}}}
AUX_WEIGHT = {"loss": {"keys": {"aux": {"bounds": [0.0, 2.0], "mode": "set"}}}}


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    knob: str  # "lr" or "aux": what the sweep and the tuner change
    start: float  # the starting recipe's value of the knob
    space: tuple[float, float]  # the sweep's range for the knob
    log_space: bool
    max_steps: int
    eval_every: int
    make: Callable[[int, float, int], Problem] = field(repr=False)
    recipe_actuators: dict = field(default_factory=lambda: LR_MULT, repr=False)
    oracle: Callable[[int, int], float] | None = field(default=None, repr=False)  # lr at (step, max_steps)
    has_accuracy: bool = False
    family: str = ""  # tasks of one family differ only in their start: they share one sweep

    def build(self, seed: int, knob: float) -> Problem:
        return self.make(seed, knob, self.max_steps)


def _nqm_oracle(step: int, max_steps: int) -> float:
    pieces = nqm_oracle_pieces(max_steps)
    width = math.ceil(max_steps / len(pieces))
    return pieces[min((step - 1) // width, len(pieces) - 1)]


def _triangle_oracle(step: int, max_steps: int) -> float:
    return 1.0 / triangle_curvature(step, max_steps, Triangle.h_max)


DIGITS_LR = 3e-3  # the best constant Adam lr for this MLP (from a grid); T1 starts 10x off it


def tasks(scale: float = 1.0) -> list[Task]:
    """The task table; ``scale`` shortens every run (the smoke test uses a few steps)."""

    def steps(n: int) -> int:
        return max(4, int(n * scale))

    def every(n: int) -> int:
        return max(2, int(n * scale))

    return [
        Task("T1-low", "T1 digits MLP, Adam, lr 10x too small", "lr", DIGITS_LR / 10, (1e-4, 1e-1), True,
             steps(600), every(30), lambda s, v, n: DigitsProblem(s, v), has_accuracy=True, family="T1"),
        Task("T1-high", "T1 digits MLP, Adam, lr 10x too large", "lr", DIGITS_LR * 10, (1e-4, 1e-1), True,
             steps(600), every(30), lambda s, v, n: DigitsProblem(s, v), has_accuracy=True, family="T1"),
        Task("T2", "T2 two-loss regression, aux task turns harmful at 50%", "aux", 1.0, (0.0, 2.0), False,
             steps(600), every(30), lambda s, v, n: TwoLossProblem(s, v, shift_step=n // 2),
             recipe_actuators=AUX_WEIGHT),
        Task("T3", "T3 noisy quadratic (short-horizon bias), SGD", "lr", 0.5, (1e-3, 1.9), True,
             steps(500), every(25), lambda s, v, n: NoisyQuadratic(s, v), oracle=_nqm_oracle),
        Task("T4", "T4 triangle: best lr = 1/h(t), SGD", "lr", 0.05, (1e-2, 1.0), True,
             steps(500), every(25), lambda s, v, n: Triangle(s, v, n), oracle=_triangle_oracle),
    ]
