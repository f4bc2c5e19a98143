"""kws: train, evaluate and export compact LSTM keyword spotters (the training side, needs PyTorch)."""

from kws.errors import KwsError

__all__ = ["KwsError"]
__version__ = "0.1.0"
