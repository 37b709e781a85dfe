"""Training: the loop and its callbacks, multi-task pretraining, head training."""

from ..tensors import move_to_device
from .trainer import Callback, NonFiniteLoss, Trainer, TrainState, poly_lr

__all__ = ["Callback", "NonFiniteLoss", "Trainer", "TrainState", "move_to_device", "poly_lr"]
