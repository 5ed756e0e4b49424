"""Manual live commands on the same actuators the tuner uses: ``hotcb --dir RUN opt set lr=1e-3``."""

from __future__ import annotations

from typing import Any

from hotcb.actuators.mutable_state import MutableState


def handle_manual(state: MutableState, module: str, op: str, args: dict, env: dict) -> str:
    """Set (``op="set"``) or scale (``op="scale"``) knobs named ``module.KEY``; all or nothing."""
    if op not in ("set", "scale"):
        raise ValueError(f"unknown {module} command {op!r}; accepted: set, scale")
    if not args:
        raise ValueError(f"{module} {op} needs at least one KEY=VALUE")
    plan: list[tuple[Any, dict]] = []
    for key, value in args.items():
        name = f"{module}.{key}"
        actuator = state.get(name)
        if actuator is None:
            known = sorted(n for n in state if n.startswith(module + "."))
            raise KeyError(f"{name}: no such actuator; registered: {', '.join(known) or '(none)'}")
        patch = {"mult" if op == "scale" else "value": value}
        check = actuator.validate(patch, env)
        if not check:
            raise ValueError(check.reason)
        plan.append((actuator, patch))
    done = []
    for actuator, patch in plan:
        result = actuator.apply(patch, env)
        if not result.ok:
            raise RuntimeError(f"{actuator.name}: {result.detail}")
        done.append(f"{actuator.name}: {result.before} -> {result.after}")
    return "; ".join(done)
