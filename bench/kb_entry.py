"""The ``kb`` command line with the benchmark's plugin selection (``python -m bench.kb_entry``).

``KB_BENCH_PLUGINS`` (set by ``python -m bench --plugins``) overrides the plugin allowlist:
``none`` loads no plugin, ``a,b`` loads those. ``KB_PLUGINS`` cannot say "none" (an empty value
means "all"), hence this entry point; without ``KB_BENCH_PLUGINS`` it is exactly ``kb``.
"""

from __future__ import annotations

import os


def plugin_overrides() -> dict:
    raw = os.environ.get("KB_BENCH_PLUGINS")
    if raw is None:
        return {}
    raw = raw.strip()
    if raw in ("", "none"):
        return {"PLUGINS": []}
    return {"PLUGINS": [p.strip() for p in raw.split(",") if p.strip()]}


def main(argv=None) -> None:
    import click

    from kb.app import ConfigurationError, create_app
    from kb.cli import build_cli

    try:
        app = create_app(plugin_overrides())
    except ConfigurationError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc
    build_cli(app).main(args=argv, prog_name="kb")


if __name__ == "__main__":
    main()
