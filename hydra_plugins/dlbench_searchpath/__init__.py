"""Hydra plugins for dlbench's config folders (dlbench/searchpath.py):

- a search-path plugin: a dlbench run looks in the user's config folders before the shipped
  tree. Other Hydra apps are left as they are.
- a config source for those folders (scheme dlbench-user://): Hydra's file source, except that
  a user's file for a registered component starts from the code's defaults
  (config_store.with_code_defaults), as dlbench's own files do with `defaults: [_name]`.
"""

from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.plugins.config_source import ConfigResult
from hydra.plugins.search_path_plugin import SearchPathPlugin


class DlbenchSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from dlbench.searchpath import is_dlbench_path, user_config_dirs

        if not any(e.provider == "main" and is_dlbench_path(e.path) for e in search_path.get_path()):
            return
        for folder in user_config_dirs():
            search_path.prepend(
                "dlbench-user", f"dlbench-user://{folder}", anchor=SearchPathQuery(provider="main")
            )


class DlbenchUserConfigSource(FileConfigSource):
    @staticmethod
    def scheme() -> str:
        return "dlbench-user"

    def load_config(self, config_path: str) -> ConfigResult:
        from dlbench.config_store import with_code_defaults

        result = super().load_config(config_path)
        result.config = with_code_defaults(config_path, result.config)
        return result
