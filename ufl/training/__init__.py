"""Training: the loop and its callbacks, multi-task pretraining, head training."""

from .trainer import Callback, NonFiniteLoss, Trainer, TrainState, move_to_device, poly_lr

__all__ = ["Callback", "NonFiniteLoss", "Trainer", "TrainState", "move_to_device", "poly_lr"]
