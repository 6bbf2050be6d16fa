"""``python -m kb`` is the ``kb`` command."""

from .cli import main

main()
