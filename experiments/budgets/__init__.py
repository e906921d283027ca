"""Issue 9: the accuracy-vs-MACs front and the budget-conditioned agent (scripts and their table helpers)."""
