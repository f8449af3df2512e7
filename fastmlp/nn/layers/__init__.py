"""Layers over the model's flat parameter buffer: Dense, Activation, Dropout."""

from fastmlp.nn.layers.activation import Activation
from fastmlp.nn.layers.dense import Dense
from fastmlp.nn.layers.dropout import Dropout, StackedDropout
from fastmlp.nn.layers.layer import BufferCache, Layer
from fastmlp.nn.layers.layout import ParameterLayout

__all__ = [
    "Activation",
    "BufferCache",
    "Dense",
    "Dropout",
    "Layer",
    "ParameterLayout",
    "StackedDropout",
]
