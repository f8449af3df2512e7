"""fastmlp: multilayer perceptrons written from scratch, fast on NumPy and CuPy."""

from fastmlp import data, optim, schedules
from fastmlp.backends import Backend, DeviceUnavailableError, available_devices, get_backend
from fastmlp.monitor import Monitor
from fastmlp.nn import MLP, Checkpoint, load_checkpoint
from fastmlp.training import EpochMetrics, StopTraining, TrainingHistory, train

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Backend",
    "Checkpoint",
    "DeviceUnavailableError",
    "EpochMetrics",
    "Monitor",
    "StopTraining",
    "TrainingHistory",
    "available_devices",
    "data",
    "get_backend",
    "load_checkpoint",
    "optim",
    "schedules",
    "train",
]
