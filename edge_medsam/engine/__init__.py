"""Training engine shared by teachers and distillation: loop, AMP, DDP, atomic checkpoints, exact resume, logs."""
