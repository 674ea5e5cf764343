"""Training tasks (teacher fine-tuning, student distillation) that run on the engine."""
