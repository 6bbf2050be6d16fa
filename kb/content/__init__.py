"""Lesson content: reading files, front matter, rendering and syncing into the catalog."""
