"""An lr change survives every LR scheduler, and a rollback brings the exact schedule back.

Each case builds two identical optimizer + scheduler pairs (the mutated one and an unmutated
twin), steps both, applies ``lr_mult`` to one at step K through the real actuator, and compares
the two lr sequences group by group for every later step.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler as sched

from hotcb.actuators import optimizer_actuators
from hotcb.actuators import state as training_state

K, STEPS, REVERT_AT = 7, 40, 15


def _onecycle(opt):
    return sched.OneCycleLR(opt, max_lr=[0.5, 0.05], total_steps=STEPS + 5)


def _sequential(opt):
    warm = sched.LinearLR(opt, start_factor=0.1, total_iters=5)
    cos = sched.CosineAnnealingLR(opt, T_max=20, eta_min=1e-4)
    return sched.SequentialLR(opt, [warm, cos], milestones=[10])


def _hf(name):
    def make(opt):
        import transformers

        factory = getattr(transformers, name)
        return factory(opt, num_warmup_steps=5, num_training_steps=STEPS + 5)

    return make


SCHEDULERS = {
    "LambdaLR": lambda opt: sched.LambdaLR(opt, lambda e: 1.0 / (1 + 0.1 * e)),
    "StepLR": lambda opt: sched.StepLR(opt, step_size=4, gamma=0.5),
    "CosineAnnealingLR": lambda opt: sched.CosineAnnealingLR(opt, T_max=12, eta_min=1e-3),
    "OneCycleLR": _onecycle,
    "ReduceLROnPlateau": lambda opt: sched.ReduceLROnPlateau(opt, factor=0.5, patience=2),
    "SequentialLR": _sequential,
    "CosineAnnealingWarmRestarts": lambda opt: sched.CosineAnnealingWarmRestarts(opt, T_0=6, eta_min=1e-3),
    "ExponentialLR": lambda opt: sched.ExponentialLR(opt, gamma=0.9),
    "hf_linear_warmup": _hf("get_linear_schedule_with_warmup"),
    "hf_cosine_warmup": _hf("get_cosine_schedule_with_warmup"),
    "hf_polynomial_warmup": _hf("get_polynomial_decay_schedule_with_warmup"),
}


def _pair(name):
    """(optimizer, scheduler) with two param groups of different lrs."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.1}, {"params": [model.bias], "lr": 0.01}],
                          lr=0.1, momentum=0.9)
    return opt, SCHEDULERS[name](opt)


def _step(opt, scheduler, t):
    opt.step()
    if isinstance(scheduler, sched.ReduceLROnPlateau):
        scheduler.step(1.0 if t % 5 else 0.5)  # plateaus with an occasional improvement
    else:
        scheduler.step()


def _lrs(opt):
    return [g["lr"] for g in opt.param_groups]


def _run(name, mult, revert):
    """lr sequences (mutated, twin), and the lr actuator's snapshot taken at K."""
    opt, scheduler = _pair(name)
    twin_opt, twin_scheduler = _pair(name)
    lr = optimizer_actuators(opt, schedulers=[scheduler])[0]
    mutated, twin, snapshot = [], [], None
    for t in range(STEPS):
        if t == K:
            snapshot = lr.snapshot({})
            assert lr.apply({"mult": mult}, {}).ok
        if revert and t == REVERT_AT:
            assert lr.restore(snapshot, {}).ok
        _step(opt, scheduler, t)
        _step(twin_opt, twin_scheduler, t)
        mutated.append(_lrs(opt))
        twin.append(_lrs(twin_opt))
    return mutated, twin


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_accepted_lr_mult_stays_half_of_the_unmutated_schedule(name):
    mutated, twin = _run(name, 0.5, revert=False)
    assert mutated[: K - 1] == twin[: K - 1]
    for t in range(K, STEPS):
        for got, ref in zip(mutated[t], twin[t]):
            assert got == pytest.approx(0.5 * ref, rel=1e-12, abs=0), f"step {t}: {got} vs half of {ref}"
    assert any(mutated[t] != mutated[K] for t in range(K, STEPS)), "the schedule never moved: weak test"


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@pytest.mark.parametrize("mult", [0.5, 0.73])
def test_params_rollback_brings_the_schedule_back(name, mult):
    mutated, twin = _run(name, mult, revert=True)
    for t in range(REVERT_AT, STEPS):
        for got, ref in zip(mutated[t], twin[t]):
            assert got == pytest.approx(ref, rel=1e-12, abs=0), f"step {t}: {got} vs {ref}"


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_state_rollback_restores_the_schedule_bit_exact(name):
    opt, scheduler = _pair(name)
    twin_opt, twin_scheduler = _pair(name)
    lr = optimizer_actuators(opt, schedulers=[scheduler])[0]
    env = {"optimizer": opt, "scheduler": scheduler}
    for t in range(K):
        _step(opt, scheduler, t)
        _step(twin_opt, twin_scheduler, t)
    snap = training_state.capture(env)
    assert lr.apply({"mult": 0.37}, env).ok
    for t in range(K, K + 5):
        _step(opt, scheduler, t)
    training_state.restore(snap, env)
    lr.reverted()
    for t in range(K, STEPS):
        _step(opt, scheduler, t)
        _step(twin_opt, twin_scheduler, t)
        assert _lrs(opt) == _lrs(twin_opt), f"step {t}"


def test_values_reaching_the_optimizer_are_plain_floats():
    opt, scheduler = _pair("LambdaLR")
    lr, wd = optimizer_actuators(opt, schedulers=[scheduler])[:2]
    import numpy as np
    from omegaconf import OmegaConf

    node = OmegaConf.create({"v": 0.02})
    assert lr.apply({"value": node.v}, {}).ok
    assert wd.apply({"value": np.float32(0.5)}, {}).ok
    assert all(type(g["lr"]) is float and type(g["weight_decay"]) is float for g in opt.param_groups)
    assert all(type(v) is float for v in scheduler.base_lrs)
    assert not lr.apply({"value": "1e-4"}, {}).ok
    assert math.isclose(opt.param_groups[0]["lr"], 0.02)
