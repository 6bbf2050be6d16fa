"""Built-in plugin `quizzes` (filled in by its own issue)."""
