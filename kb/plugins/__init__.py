"""Built-in plugins, each a package registered from ``kb.pluginhost.BUILTIN_PLUGINS``."""
