"""Training: loss, checkpoints and the training loop (`train`)."""

from nnip.training.trainer import TrainResult, train

__all__ = ["TrainResult", "train"]
