"""fastmlp: multilayer perceptrons written from scratch, fast on NumPy and CuPy."""

from fastmlp import optim
from fastmlp.backends import Backend, DeviceUnavailableError, available_devices, get_backend
from fastmlp.nn import MLP, Checkpoint, load_checkpoint

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Backend",
    "Checkpoint",
    "DeviceUnavailableError",
    "available_devices",
    "get_backend",
    "load_checkpoint",
    "optim",
]
