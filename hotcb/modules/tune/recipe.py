"""Loading recipes, and evolving them across runs from their summaries.

``evolve_recipe`` is the cross-run half of the learning loop: each family's ``prior_center``
moves toward the values that won (weighted by their scores), bounds narrow around consistent
winners and widen when winners sit at an edge, and a family that never won after enough
tries is switched off.
"""

from __future__ import annotations

import functools
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

from hotcb.config_errors import ConfigError
from hotcb.modules.tune.schemas import TuneRecipe
from hotcb.modules.tune.storage import RECIPE_FILE


def startup_problems(recipe: TuneRecipe, sampler_factory: Any = None) -> list[tuple[str, str]]:
    """What a valid recipe would still trip over once a tuned run starts, as (path under the
    recipe, message): a sampler that cannot be built, a missing warm-start source, a snapshot
    directory that cannot be written. Found before training, not at the first proposal."""
    from hotcb.actuators.state import snapshot_dir_problem
    from hotcb.modules.tune.search import search_problems

    problems = search_problems(recipe, sampler_factory)
    if recipe.acceptance.rollback == "state":
        problem = snapshot_dir_problem(recipe.acceptance.snapshot_dir)
        problems += [("acceptance.snapshot_dir", problem)] if problem else []
    return problems


def load_yaml(path: str | os.PathLike) -> Any:
    """YAML as Hydra reads it: ``1e-3`` is a number (PyYAML's YAML 1.1 rules make it a string,
    so the same recipe file would pass as ``recipe=x`` and fail when loaded here)."""
    with open(path, encoding="utf-8") as fh:
        return parse_yaml(fh.read())


def parse_yaml(text: str) -> Any:
    import yaml

    return yaml.load(text, Loader=_yaml_loader())


@functools.lru_cache(maxsize=1)
def _yaml_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            """A key given twice is an error, as in Hydra (PyYAML keeps the last in silence)."""
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: merged keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


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
    """A new recipe whose priors and bounds reflect what won in earlier runs' summaries.

    Per family, from the summaries' ``families.<name>`` sections (``tried`` and
    ``accepted_values: [{value, score}]``), working on a log scale for multiplicative families:

    - ``prior_center`` moves a fraction ``alpha`` of the way to the score-weighted mean winner;
    - when every winner lies within the outer tenth of the range at one edge, the bounds widen
      past that edge by ``widen - 1`` of the span (never across zero; betas stay below 1);
    - otherwise, with three or more winners spread over less than ``narrow`` of the span, the
      bounds shrink to ``narrow`` of the span around them (still holding every winner). A
      multiplier's window keeps 1 inside with a tenth of the old span on each side: winners
      that all raised the lr in earlier runs must not forbid the next run to lower it;
    - a family with no winner after ``min_tries_to_disable`` applied tries is disabled.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not 0.0 < narrow < 1.0 or widen < 1.0:
        raise ValueError(f"narrow must be in (0, 1) and widen >= 1, got narrow={narrow}, widen={widen}")
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
        if not wins:
            if tried >= min_tries_to_disable:
                spec["enabled"] = False
            continue
        to, back = (math.log, math.exp) if family.log_scale else (float, float)
        lo, hi = (to(b) for b in spec["bounds"])
        span = hi - lo
        points = [to(float(w["value"])) for w in wins]
        weights = [max(float(w.get("score") or 0.0), 0.0) + 1e-12 for w in wins]
        winner = sum(w * p for w, p in zip(weights, points)) / sum(weights)
        old = to(spec["prior_center"]) if spec.get("prior_center") is not None else (lo + hi) / 2
        center = (1 - alpha) * old + alpha * winner
        edge = 0.1 * span
        if all(p <= lo + edge for p in points):
            lo = _widened(lo - (widen - 1.0) * span, lo, family)
        elif all(p >= hi - edge for p in points):
            hi = _widened(hi + (widen - 1.0) * span, hi, family)
        elif len(points) >= 3 and max(points) - min(points) < narrow * span:
            width = narrow * span
            new_lo = min(max(winner - width / 2, lo), min(points))
            if family.log_scale and lo < 0 < hi:  # keep the multiplier free to go either way of 1
                margin = min(edge, -lo, hi)
                new_lo = min(max(min(new_lo, -margin), margin - width), min(points))
            lo, hi = new_lo, min(max(new_lo + width, max(points)), hi)
        spec["bounds"] = [float(back(lo)), float(back(hi))]
        spec["prior_center"] = float(back(min(max(center, lo), hi)))
    return TuneRecipe.from_dict(data)


def _widened(new: float, old: float, family: Any) -> float:
    """A widened bound (in search scale) that crosses no natural limit: a set-mode bound keeps
    its sign, and a beta stays below 1. Multiplicative bounds stay positive by construction."""
    if family.mode == "set":
        if old >= 0 > new or old <= 0 < new:
            new = 0.0
        if family.index is not None:  # betas
            new = min(new, 0.9999)
    return new


def describe_evolution(base: TuneRecipe, evolved: TuneRecipe) -> list[str]:
    """One line per family whose prior, bounds or switch changed."""
    before = {f.name: f.spec for f in base.families()}
    after = {f.name: f.spec for f in evolved.families()}
    lines = []
    for name, old in before.items():
        new = after.get(name)
        if new is None:
            lines.append(f"{name}: disabled (never won)")
        elif (new.prior_center, new.bounds) != (old.prior_center, old.bounds):
            lines.append(f"{name}: prior_center {_g(old.prior_center)} -> {_g(new.prior_center)}, "
                         f"bounds [{_g(old.bounds[0])}, {_g(old.bounds[1])}] -> [{_g(new.bounds[0])}, {_g(new.bounds[1])}]")
    return lines


def _g(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
