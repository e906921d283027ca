"""Training and fine-tuning (SGD, schedules, augmentation, optional knowledge distillation)."""
