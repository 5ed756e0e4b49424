"""Which Hydra config option set a key: ``recipe=lr_only``, ``search=gp``, ``override k=v``.

A config error is only useful if it says where to fix it. Hydra does not record where each
value came from, so :class:`ConfigOrigin` replays the job's defaults list (the configs in merge
order) and its command-line overrides, and names the last one that defines the key, or the
closest defined parent of a key that is missing. Built only when an error is reported.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

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
        from omegaconf import OmegaConf

        overrides, defaults = _defaults_list(hydra_cfg)
        loader = GlobalHydra.instance().config_loader()
        sources = []
        for item in defaults:
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
            # A problem found on a node (bounds checked against the family's name) is most
            # likely the work of an override below it: overrides are merged last.
            label = self._override_for(key) or (depth == len(parts) and self._override_below(key)) or self._source_for(key)
            if label:
                return label + self._interpolated_from(key)
        return ""

    def _override_below(self, key: str) -> str:
        return self._override_where(lambda name: name.startswith(key + "."))

    def _interpolated_from(self, key: str) -> str:
        """`` (${seed} from override seed=zero)`` when the value at ``key`` is a plain
        interpolation: the bad value was set where the interpolated key was."""
        raw = self._source(key)[1]
        match = re.fullmatch(r"\$\{([\w.]+)\}", raw) if isinstance(raw, str) else None
        if match is None or self._override_for(key):
            return ""
        source = self._override_for(match[1]) or self._source_for(match[1])
        return f" ({raw} from {source})" if source else ""

    def _override_for(self, key: str) -> str:
        return self._override_where(lambda name: name == key)

    def _override_where(self, matches: Callable[[str], bool]) -> str:
        """The last command-line override whose key ``matches``, as a label, or ""."""
        for text in reversed(self.overrides):
            if matches(text.split("=", 1)[0].lstrip("+~")):
                return f"override {text}"
        return ""

    def _source_for(self, key: str) -> str:
        return self._source(key)[0]

    def _source(self, key: str) -> tuple[str, Any]:
        """The last config that defines ``key`` and the value it gives, unresolved; or
        ("", _MISSING)."""
        for label, package, data in reversed(self.sources):
            if not package:
                found = _lookup(data, key)
            elif key == package or key.startswith(package + "."):
                found = _lookup(data, key[len(package) + 1 :])
            else:
                continue
            if found is not _MISSING:
                return label, found
        return "", _MISSING


def _defaults_list(hydra_cfg: Any) -> tuple[list[str], list[Any]]:
    """The job's command-line overrides and its defaults list (the configs in merge order), as
    Hydra computed them: with the job's ``hydra.*`` overrides too, since ``hydra.searchpath``
    decides where the options are found."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    task = [str(o) for o in OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)]
    own = [str(o) for o in OmegaConf.to_container(hydra_cfg.overrides.hydra, resolve=False)]
    defaults = GlobalHydra.instance().config_loader().compute_defaults_list(
        hydra_cfg.job.config_name, own + task, RunMode.RUN)
    return task, defaults.defaults


def _label(item: Any) -> str:
    """``recipe=lr_only`` for a group option, ``train.yaml`` for the primary config."""
    option = item.config_path.rsplit("/", 1)[-1]
    if item.override_key:
        return f"{item.override_key}={option}"
    return f"{item.config_path}.yaml"


# hotcb's config groups and the package each option's content belongs in.
GROUP_PACKAGES = {"tune": "hotcb.tune", "recipe": "hotcb.recipe", "search": "hotcb.recipe.search",
                  "adapter": "hotcb.adapter"}


def misplaced_options(cfg: Any) -> list[str]:
    """Problems for hotcb group options whose content Hydra put outside ``hotcb``.

    A file in ``conf/recipe/`` without ``# @package hotcb.recipe`` as its first line (Hydra
    reads the package only from the comment lines at the very top) lands at the root key
    ``recipe``, and the run would silently use the defaults. Costs nothing unless the composed
    ``cfg`` has such a root key; then the job's defaults list tells which option put it there.
    """
    if cfg is None or not any(group in cfg for group in GROUP_PACKAGES):
        return []
    try:
        from hydra.core.hydra_config import HydraConfig

        defaults = _defaults_list(cfg.get("hydra") or HydraConfig.get())[1]
    except Exception:  # noqa: BLE001 - outside a Hydra job there is no option to blame
        return []
    problems = []
    for item in defaults:
        group = (item.config_path or "").split("/", 1)[0]
        expected = GROUP_PACKAGES.get(group)
        if item.override_key == group and expected and item.package == group:  # no `# @package` line read
            problems.append(
                f"{_label(item)} → {item.package}: Hydra put this option at the top-level key "
                f"'{item.package}', outside hotcb, so the run would not use it; make "
                f"'# @package {expected}' the first line of {item.config_path}.yaml")
    return problems


def origin_of_job() -> Optional[ConfigOrigin]:
    """The running Hydra job's origins, or None outside a job or when Hydra's internals differ."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return ConfigOrigin.from_hydra(HydraConfig.get())
    except Exception:  # noqa: BLE001 - without provenance, errors still name path and value
        return None
