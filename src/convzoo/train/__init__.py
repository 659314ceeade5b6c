"""Training: TrainConfig, the loop, optimizers, schedules, checkpoints, distributed.

``config`` (TrainConfig, recipes), ``engine`` (train, evaluate), ``optim`` (optimizers,
schedules, EMA), ``checkpoint`` (atomic save, resume), ``distributed`` (torchrun + DDP),
``metrics`` (JSONL/CSV, plots), ``inference`` (eval / predict from a checkpoint), ``cli``.
"""
