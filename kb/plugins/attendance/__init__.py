"""Built-in plugin `attendance` (filled in by its own issue)."""
