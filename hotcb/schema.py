"""HotcbConfig: the root pydantic model of the composed ``cfg.hotcb`` subtree.

Hydra composes; :func:`validate_hotcb` resolves the result and validates it with this model
(``extra="forbid"``) before any model or data is built, and the launcher instantiates only
from the validated data. Every problem is reported at once (but an interpolation that does not
resolve, which stops the resolution), one line each, naming the option that set the value
(see :mod:`hotcb.config_origin`).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hotcb.config_errors import ConfigError, Origin, format_problem, problems_from_pydantic
from hotcb.modules.tune.schemas import TuneRecipe


class TuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    mode: Literal["off", "observe", "suggest", "active", "replay"] = "off"
    replay_from: Optional[str] = None

    @model_validator(mode="after")
    def _replay_needs_source(self) -> "TuneConfig":
        if self.mode == "replay" and not self.replay_from:
            raise ValueError("mode 'replay' needs replay_from: the run directory to replay")
        return self


class HotcbConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    run_dir: Optional[str] = None
    tune: TuneConfig = Field(default_factory=TuneConfig)
    recipe: TuneRecipe = Field(default_factory=TuneRecipe)
    adapter: dict[str, Any] = Field(default_factory=lambda: {"_target_": "hotcb.adapters.lightning.HotCBLightning"})
    actuators: dict[str, dict[str, Any]] = Field(default_factory=dict)
    freeze: Literal["off", "prod", "replay"] = "off"
    auto_disable_on_error: bool = True
    debounce_steps: int = Field(default=1, ge=1)
    validate_only: bool = False
    allow_targets: list[str] = Field(default_factory=list)


def _targets(data: dict) -> dict[str, Any]:
    """Every ``_target_`` the launcher would instantiate, by dotted path under ``hotcb``; read
    from the plain data so that a refused target is reported beside any field error."""
    def target(node: Any) -> Any:
        return node.get("_target_") if isinstance(node, dict) else None

    found = {"adapter._target_": target(data.get("adapter", {"_target_": "hotcb.adapters.lightning.HotCBLightning"}))}
    actuators = data.get("actuators")
    for name, spec in (actuators.items() if isinstance(actuators, dict) else ()):
        found[f"actuators.{name}._target_"] = target(spec)
    recipe = data.get("recipe")
    search = recipe.get("search") if isinstance(recipe, dict) else None
    sampler = search.get("sampler") if isinstance(search, dict) else None
    if sampler is not None:
        found["recipe.search.sampler._target_"] = target(sampler)
    return found


def validate_config(data: Any, source: str = "", origin: Origin = None, problems: Optional[list[str]] = None) -> HotcbConfig:
    """Validate plain data for ``cfg.hotcb``; raises ConfigError with ``hotcb.``-prefixed paths.
    Field errors and refused targets are reported together, after ``problems`` found before;
    what the run would trip over is checked only on a config valid so far."""
    from hotcb._instantiate import target_problem

    if not isinstance(data, dict):
        raise ConfigError([*(problems or []), f"hotcb: must be a mapping, got {type(data).__name__}"], source)
    problems = list(problems or [])
    config = None
    try:
        config = HotcbConfig.model_validate(data)
    except ValidationError as exc:
        problems += problems_from_pydantic(exc, "hotcb", origin, HotcbConfig)
    allowed = [a for a in data.get("allow_targets") or [] if isinstance(a, str)] if isinstance(data.get("allow_targets"), list) else []
    for where, target in _targets(data).items():
        problem = target_problem(target, allowed)
        if problem:
            problems.append(format_problem(f"hotcb.{where}", problem, origin))
    if not problems:
        problems = [format_problem(f"hotcb.{path}", message, origin) for path, message in run_problems(config)]
    if problems:
        raise ConfigError(problems, source)
    return config


def run_problems(config: HotcbConfig) -> list[tuple[str, str]]:
    """What a valid config would still trip over once the run starts (a sampler that cannot be
    built, a missing warm-start or replay source), as (path under ``hotcb``, message): found
    by ``config validate`` and before any model is built, not at the first proposal."""
    if config.tune.mode == "replay":
        from hotcb.modules.tune.replay import ReplaySource

        try:
            ReplaySource(config.tune.replay_from, run_dir=config.run_dir).load()
        except ValueError as exc:
            return [("tune.replay_from", str(exc))]
    if config.tune.mode not in ("active", "suggest"):
        return []
    from hotcb.modules.tune.recipe import startup_problems
    from hotcb.modules.tune.search import default_sampler_factory

    allowed = tuple(config.allow_targets)
    problems = startup_problems(config.recipe, lambda: default_sampler_factory(config.recipe.search, allowed)())
    return [(f"recipe.{path}", message) for path, message in problems]


def validate_hotcb(cfg: Any, origin: Origin = None, source: str = "cfg.hotcb") -> HotcbConfig:
    """Resolve and validate ``cfg.hotcb`` of a composed config: required values left ``???``
    and interpolations that do not resolve are reported like any other bad field."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from hotcb.config_origin import misplaced_options

    stray = misplaced_options(cfg)
    node = cfg.get("hotcb") if cfg is not None else None
    if node is None:
        return validate_config({}, source, origin, stray)
    try:
        missing = sorted(OmegaConf.missing_keys(node))  # full keys: hotcb.tune.replay_from
        data = OmegaConf.to_container(node, resolve=True)  # a missing value stays '???'
    except OmegaConfBaseException as exc:
        path = exc.full_key or "hotcb"  # full keys from the root: hotcb.run_dir
        message = str(exc).splitlines()[0]
        raise ConfigError([*stray, format_problem(path, f"cannot resolve: {message}", origin)], source) from None
    found = [*stray, *(format_problem(p, "required value is missing (???); set it", origin) for p in missing)]
    try:
        return validate_config(data, source, origin, found)
    except ConfigError as exc:  # a missing value is reported once, not again as a bad '???'
        later = [p for p in exc.problems[len(found):] if not any(f"{key}:" in p for key in missing)]
        raise ConfigError([*found, *later], source) from None
