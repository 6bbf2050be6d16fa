"""Built-in plugin `progress` (filled in by its own issue)."""
