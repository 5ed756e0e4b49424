"""HotcbConfig: the root pydantic model of the composed ``cfg.hotcb`` subtree.

Hydra composes; this model validates the resolved result (``extra="forbid"``) before any model
or data is built, and the launcher instantiates only from the validated data.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hotcb.config_errors import ConfigError, problems_from_pydantic
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

    @model_validator(mode="after")
    def _targets(self) -> "HotcbConfig":
        from hotcb._instantiate import check_target

        check_target(self.adapter.get("_target_"), self.allow_targets, "adapter._target_")
        for name, spec in self.actuators.items():
            check_target(spec.get("_target_"), self.allow_targets, f"actuators.{name}._target_")
        if self.recipe.search.sampler is not None:
            check_target(self.recipe.search.sampler.get("_target_"), self.allow_targets, "recipe.search.sampler._target_")
        return self


def validate_config(data: Any, source: str = "") -> HotcbConfig:
    """Validate plain data for ``cfg.hotcb``; raises ConfigError with ``hotcb.``-prefixed paths."""
    if not isinstance(data, dict):
        raise ConfigError([f"hotcb: must be a mapping, got {type(data).__name__}"], source)
    try:
        return HotcbConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from_pydantic(exc, prefix="hotcb"), source) from None
