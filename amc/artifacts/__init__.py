"""Plans (which channels a pruned model keeps) and checkpoints (weights + the recipe to rebuild the model)."""
