"""Which Hydra config option set a key: ``recipe=lr_only``, ``search=gp``, ``override k=v``.

A config error is only useful if it says where to fix it. Hydra does not record where each
value came from, so :class:`ConfigOrigin` replays the job's defaults list (the configs in merge
order) and its command-line overrides, and names the last one that defines the key, or the
closest defined parent of a key that is missing. Built only when an error is reported.
"""

from __future__ import annotations

from typing import Any, Optional

_MISSING = object()


def _lookup(data: Any, dotted: str) -> Any:
    node = data
    for part in dotted.split(".") if dotted else []:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


class ConfigOrigin:
    """``origin(path)`` → the label of the option that set ``path``, or "" when unknown.

    Args:
        sources: ``(label, package, plain config)`` in merge order (later wins).
        overrides: the command line's ``key=value`` overrides, in order.
    """

    def __init__(self, sources: list[tuple[str, str, dict]], overrides: list[str]):
        self.sources = sources
        self.overrides = overrides

    @classmethod
    def from_hydra(cls, hydra_cfg: Any) -> "ConfigOrigin":
        """From the job's ``hydra`` node (``HydraConfig.get()`` or a composed ``cfg.hydra``);
        needs Hydra's global state (inside a job or an ``initialize_*`` context)."""
        from hydra.core.global_hydra import GlobalHydra
        from hydra.types import RunMode
        from omegaconf import OmegaConf

        overrides = [str(o) for o in OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)]
        loader = GlobalHydra.instance().config_loader()
        defaults = loader.compute_defaults_list(hydra_cfg.job.config_name, overrides, RunMode.RUN)
        sources = []
        for item in defaults.defaults:
            if item.config_path is None:
                continue
            loaded = loader.repository.load_config(item.config_path)
            if loaded is None:
                continue
            plain = OmegaConf.to_container(loaded.config, resolve=False)
            plain.pop("defaults", None)
            sources.append((_label(item), item.package or "", plain))
        return cls(sources, overrides)

    def __call__(self, path: str) -> str:
        parts = path.split(".")
        for depth in range(len(parts), 1, -1):  # down to hotcb.<section>, never bare hotcb
            key = ".".join(parts[:depth])
            label = self._override_for(key) or self._source_for(key)
            if label:
                return label
        return ""

    def _override_for(self, key: str) -> str:
        for text in reversed(self.overrides):
            name = text.split("=", 1)[0].lstrip("+~")
            if name == key:
                return f"override {text}"
        return ""

    def _source_for(self, key: str) -> str:
        for label, package, data in reversed(self.sources):
            if not package:
                found = _lookup(data, key)
            elif key == package or key.startswith(package + "."):
                found = _lookup(data, key[len(package) + 1 :])
            else:
                continue
            if found is not _MISSING:
                return label
        return ""


def _label(item: Any) -> str:
    """``recipe=lr_only`` for a group option, ``train.yaml`` for the primary config."""
    option = item.config_path.rsplit("/", 1)[-1]
    if item.override_key:
        return f"{item.override_key}={option}"
    return f"{item.config_path}.yaml"


def origin_of_job() -> Optional[ConfigOrigin]:
    """The running Hydra job's origins, or None outside a job or when Hydra's internals differ."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return ConfigOrigin.from_hydra(HydraConfig.get())
    except Exception:  # noqa: BLE001 - without provenance, errors still name path and value
        return None
