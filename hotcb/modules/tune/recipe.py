"""Loading recipes, and evolving them across runs from their summaries.

``evolve_recipe`` is the cross-run half of the learning loop: each family's ``prior_center``
moves toward the values that won (weighted by their scores), bounds narrow around consistent
winners and widen when winners sit at an edge, and a family that never won after enough
tries is switched off.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

from hotcb.config_errors import ConfigError
from hotcb.modules.tune.schemas import TuneRecipe
from hotcb.modules.tune.storage import RECIPE_FILE


def load_yaml(path: str | os.PathLike) -> Any:
    import yaml

    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_recipe(source: Any = None, *, run_dir: str | os.PathLike | None = None) -> TuneRecipe:
    """A TuneRecipe from a TuneRecipe, a dict, or a YAML path; else the run dir's recipe file; else defaults."""
    if isinstance(source, TuneRecipe):
        return source
    if isinstance(source, dict):
        return TuneRecipe.from_dict(source)
    if source is None and run_dir is not None and (Path(run_dir) / RECIPE_FILE).exists():
        source = Path(run_dir) / RECIPE_FILE
    if source is None:
        return TuneRecipe()
    path = Path(source)
    if not path.exists():
        raise ConfigError([f"tune_recipe_path: file not found: {path}"], str(path))
    import yaml

    try:
        data = load_yaml(path)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"], str(path)) from None
    return TuneRecipe.from_dict(data, source="recipe")


def evolve_recipe(
    base: TuneRecipe,
    summaries: Iterable[dict],
    alpha: float = 0.3,
    *,
    min_tries_to_disable: int = 6,
    narrow: float = 0.5,
    widen: float = 1.5,
) -> TuneRecipe:
    """A new recipe whose priors and bounds reflect what won in earlier runs' summaries."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    summaries = [s for s in summaries if s]
    data = base.to_dict()
    for family in base.families():
        group, name = family.name.split(".", 1)
        section = "keys" if name in base.actuators[group].keys else "mutations"
        spec = data["actuators"][group][section][name]
        wins, tried = [], 0
        for summary in summaries:
            stats = (summary.get("families") or {}).get(family.name) or {}
            tried += int(stats.get("tried") or 0)
            wins += [w for w in stats.get("accepted_values") or [] if _finite(w.get("value"))]
        lo, hi = spec["bounds"]
        if not wins:
            if tried >= min_tries_to_disable:
                spec["enabled"] = False
            continue
        weights = [max(float(w.get("score") or 0.0), 0.0) + 1e-12 for w in wins]
        values = [float(w["value"]) for w in wins]
        log_scale = family.log_scale and lo > 0
        to = (lambda v: math.log(v)) if log_scale else (lambda v: v)
        back = (lambda v: math.exp(v)) if log_scale else (lambda v: v)
        center = back(sum(w * to(v) for w, v in zip(weights, values)) / sum(weights))
        old_center = spec.get("prior_center")
        old_center = old_center if old_center is not None else back((to(lo) + to(hi)) / 2)
        new_center = back((1 - alpha) * to(old_center) + alpha * to(center))
        span = to(hi) - to(lo)
        edge = 0.1 * span
        at_low = all(to(v) <= to(lo) + edge for v in values)
        at_high = all(to(v) >= to(hi) - edge for v in values)
        if at_low or at_high:
            grow = (widen - 1.0) * span
            lo, hi = (back(to(lo) - grow), hi) if at_low else (lo, back(to(hi) + grow))
        elif len(values) >= 3 and (max(map(to, values)) - min(map(to, values))) < narrow * span:
            half = narrow * span / 2
            mid = to(new_center)
            lo, hi = back(max(to(lo), mid - half)), back(min(to(hi), mid + half))
        lo = max(lo, 1e-12) if family.mode == "mult" else lo
        spec["bounds"] = [float(lo), float(hi)]
        spec["prior_center"] = float(min(max(new_center, lo), hi))
    return TuneRecipe.from_dict(data)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
