"""The network: the MLP, its activations, losses, initialisation and checkpoints."""

from fastmlp.nn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fastmlp.nn.mlp import MLP

__all__ = ["MLP", "Checkpoint", "load_checkpoint", "save_checkpoint"]
