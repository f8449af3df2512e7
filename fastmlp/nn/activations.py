"""Hidden-layer activations: names and their derivatives.

The arithmetic lives in the backends (``bias_activation_`` and ``activation_grad_``);
this module owns the names users may pass. Each derivative is written through the
activation's output a = f(z), so the backward pass needs no pre-activation buffer:

==========  =======================  ====================
name        f(z)                     f'(z) in terms of a
==========  =======================  ====================
identity    z                        1
sigmoid     1 / (1 + exp(-z))        a (1 - a)
tanh        tanh(z)                  1 - a^2
relu        max(z, 0)                1 if a > 0 else 0
==========  =======================  ====================
"""

from __future__ import annotations

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu")


def canonical_activation(name: str) -> str:
    """The canonical name of an activation, accepting any case (``"ReLU"`` -> ``"relu"``)."""
    key = str(name).strip().lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: choose one of {', '.join(ACTIVATIONS)}")
    return key
