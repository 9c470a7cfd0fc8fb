"""Hydra search-path plugin: a dlbench run looks in the user's config folders before the
shipped tree (dlbench/searchpath.py). Other Hydra apps are left as they are."""

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.plugins.search_path_plugin import SearchPathPlugin


class DlbenchSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from dlbench.searchpath import is_dlbench_path, user_config_dirs

        if not any(e.provider == "main" and is_dlbench_path(e.path) for e in search_path.get_path()):
            return
        for folder in user_config_dirs():
            search_path.prepend("dlbench-user", f"file://{folder}", anchor=SearchPathQuery(provider="main"))
