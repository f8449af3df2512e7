"""fastmlp: multilayer perceptrons written from scratch, fast on NumPy and CuPy."""

from fastmlp import data, optim
from fastmlp.backends import Backend, DeviceUnavailableError, available_devices, get_backend
from fastmlp.nn import MLP, Checkpoint, load_checkpoint
from fastmlp.training import EpochMetrics, TrainingHistory, train

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Backend",
    "Checkpoint",
    "DeviceUnavailableError",
    "EpochMetrics",
    "TrainingHistory",
    "available_devices",
    "data",
    "get_backend",
    "load_checkpoint",
    "optim",
    "train",
]
