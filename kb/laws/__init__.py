"""The law library: import law texts, article pages and anchors, citations in lessons."""
