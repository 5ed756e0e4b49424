"""Makes hotcb's config groups (tune, recipe, search, adapter, hotcb) visible to every Hydra app.

Appended, so an app's own ``conf/recipe/lr_only.yaml`` shadows the library's. Imports nothing
heavy: Hydra loads every plugin at start-up.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class HotcbSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="hotcb", path="pkg://hotcb.conf")
