"""The one place that turns ``_target_`` specs into objects, behind an allowlist.

Only targets under ``hotcb.``, ``optuna.samplers.`` and ``torch.optim.`` (plus what the
config lists in ``hotcb.allow_targets``) are instantiated; anything else is refused with a
message naming the target and the allowlist. A composed config names what gets built; a live
command can never reach this function (commands carry values, not targets).
"""

from __future__ import annotations

from typing import Any, Iterable

DEFAULT_ALLOWED = ("hotcb.", "optuna.samplers.", "torch.optim.")


class TargetNotAllowed(ValueError):
    pass


def target_problem(target: Any, allowed: Iterable[str] = ()) -> str:
    """Why ``target`` may not be instantiated, or "" when it may."""
    prefixes = (*DEFAULT_ALLOWED, *allowed)
    if not isinstance(target, str) or not target:
        return f"must be a dotted import path (got {target!r})"
    if not any(target == p.rstrip(".") or target.startswith(p.rstrip(".") + ".") for p in prefixes):
        return (
            f"target {target!r} is not allowed; accepted: {', '.join(p.rstrip('.') + '.*' for p in prefixes)} "
            "(add a prefix to hotcb.allow_targets)"
        )
    return ""


def check_target(target: Any, allowed: Iterable[str] = (), where: str = "_target_") -> str:
    problem = target_problem(target, allowed)
    if problem:
        raise TargetNotAllowed(f"{where}: {problem}")
    return target


def _check_tree(node: Any, allowed: Iterable[str], where: str) -> None:
    if isinstance(node, dict):
        if "_target_" in node:
            check_target(node["_target_"], allowed, f"{where}._target_" if where else "_target_")
        for key, value in node.items():
            _check_tree(value, allowed, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_tree(value, allowed, f"{where}[{i}]")


def instantiate(spec: Any, *args: Any, allowed: Iterable[str] = (), where: str = "", **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` after checking every nested ``_target_`` against the allowlist."""
    from hydra.utils import instantiate as hydra_instantiate
    from omegaconf import DictConfig, OmegaConf

    plain = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else spec
    allowed = tuple(allowed)
    _check_tree(plain, allowed, where)
    return hydra_instantiate(plain, *args, **kwargs)
