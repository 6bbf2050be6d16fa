"""The plugin host: one pluggy PluginManager per app.

Built-in plugins load from :data:`BUILTIN_PLUGINS`; external ones from the ``kb.plugins``
entry-point group. ``KB_PLUGINS`` (a comma-separated allowlist) limits which load; a listed
plugin that cannot be found or imported stops the app from starting.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs

log = logging.getLogger(__name__)

hookimpl = pluggy.HookimplMarker("kb")

ENTRY_POINT_GROUP = "kb.plugins"

# Short name -> module. The short name is the plugin's blueprint name, table prefix
# ("quiz_" for quizzes), Alembic branch and config key.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("quizzes", "kb.plugins.quizzes"),
    ("attendance", "kb.plugins.attendance"),
    ("progress", "kb.plugins.progress"),
)

CORE_PLUGIN_NAME = "core"


class PluginError(RuntimeError):
    """A plugin could not be loaded or registered something invalid."""


def make_plugin_manager(allowlist: list[str] | None, extra: list[tuple[str, Any]] = ()):
    """Build the manager: core defaults first, then built-ins, then external plugins.

    :param allowlist: plugin short names to load, or None for all built-in and installed ones.
    :param extra: (name, plugin object) pairs registered last (tests use this).
    """
    from . import default_hooks

    pm = pluggy.PluginManager("kb")
    pm.add_hookspecs(hookspecs)
    pm.register(default_hooks, name=CORE_PLUGIN_NAME)

    wanted = None if allowlist is None else set(allowlist)
    for name, module_name in BUILTIN_PLUGINS:
        if wanted is not None and name not in wanted:
            continue
        pm.register(importlib.import_module(module_name), name=name)

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if wanted is not None and ep.name not in wanted:
            continue
        if pm.has_plugin(ep.name):
            raise PluginError(
                f"external plugin {ep.name!r} ({ep.value}) has the name of a built-in plugin"
            )
        try:
            plugin = ep.load()
        except Exception as exc:  # refuse to start rather than run without a listed plugin
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        pm.register(plugin, name=ep.name)

    for name, plugin in extra:
        pm.register(plugin, name=name)

    if wanted is not None:
        missing = wanted - set(plugin_names(pm))
        if missing:
            raise PluginError(
                "KB_PLUGINS lists plugins that are not installed: " + ", ".join(sorted(missing))
            )
    pm.check_pending()
    return pm


def plugin_names(pm) -> list[str]:
    """Return the loaded plugin names, core excluded, in registration order."""
    return [name for name, _ in pm.list_name_plugin() if name != CORE_PLUGIN_NAME]


def call_each(pm, hook_name: str, **kwargs) -> list[tuple[str, Any]]:
    """Call every implementation of a hook and return (plugin name, result) pairs.

    Same order as a pluggy call (last registered first, tryfirst/trylast honoured), but each
    result stays attributed to its plugin so duplicates can be reported by name.
    """
    caller = getattr(pm.hook, hook_name)
    out = []
    for impl in reversed(caller.get_hookimpls()):
        args = {name: kwargs[name] for name in impl.argnames}
        result = impl.function(**args)
        if result is not None:
            out.append((impl.plugin_name, result))
    return out


def collect(pm, hook_name: str, key: str = "key", **kwargs) -> list:
    """Flatten a registration hook's lists, refusing two records with one key.

    :raises PluginError: naming both plugins when a key is registered twice.
    """
    seen: dict[Any, str] = {}
    records = []
    for plugin, result in call_each(pm, hook_name, **kwargs):
        for record in result:
            k = getattr(record, key) if isinstance(key, str) else key(record)
            if k in seen:
                raise PluginError(
                    f"{hook_name}: {k!r} registered by both {seen[k]!r} and {plugin!r}"
                )
            seen[k] = plugin
            records.append(record)
    return records


def hook_table(pm) -> list[tuple[str, list[str]]]:
    """Return (plugin name, implemented hook names) for ``kb plugins``."""
    table = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(c.name for c in pm.get_hookcallers(plugin) or [])
        table.append((name, hooks))
    return table
