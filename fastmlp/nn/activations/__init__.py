"""Hidden-layer activations: one file per function in this package, registered by name.

========== ===================================== ====================== ===============
name       f(z)                                  gradient written from  aliases
========== ===================================== ====================== ===============
identity   z                                     the output             linear, none
sigmoid    1 / (1 + exp(-z))                     the output             logistic
tanh       tanh(z)                               the output
relu       max(z, 0)                             the output             ReLU
leaky_relu z if z > 0 else slope * z             the output             LeakyReLU
elu        z if z > 0 else alpha (exp(z) - 1)    the output             ELU
gelu       z Phi(z) (exact, with erf)            the input              GELU
silu       z sigmoid(z)                          the input              swish, SiLU
========== ===================================== ====================== ===============

Adding one is a new file here declaring an :class:`Activation` and calling
:func:`register`; every module of this package is imported below.
"""

from __future__ import annotations

from fastmlp.nn.activations.activation import (
    ACTIVATIONS,
    Activation,
    ActivationFunction,
    canonical_activation,
    create,
    register,
)
from fastmlp.registry import import_entry_modules

# The classic four first (the order of the command line's choices), then every other file.
_FIRST = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu")
import_entry_modules(__name__, __path__, _FIRST)  # activation.py, imported above, too

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "ActivationFunction",
    "canonical_activation",
    "create",
    "register",
]
