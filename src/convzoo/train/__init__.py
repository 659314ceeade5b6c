"""Training: TrainConfig, the loop, optimizers, schedules, checkpoints, distributed."""
