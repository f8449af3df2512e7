"""Quantile functions (inverse CDFs) of the normal and beta distributions, without SciPy.

The local sweep engine samples W&B's normal and beta distributions as ``quantile(u)`` of a
uniform ``u`` in (0, 1): exact sampling for random search, and for Bayesian search a space
in which TPE's uniform prior is the distribution itself. The normal quantile is the
standard library's (``statistics.NormalDist.inv_cdf``); the beta quantile inverts the
regularised incomplete beta function (continued fraction, Numerical Recipes' ``betacf``)
by bisection, to double precision.
"""

from __future__ import annotations

import math
from statistics import NormalDist

# u is kept this far inside (0, 1): the quantile of 0 or 1 is infinite for the normal.
_EDGE = 2.0**-53
_CONTINUED_FRACTION_TERMS = 500
_TINY = 1e-300
# Enough halvings of [0, 1] to reach the smallest double.
_BISECTIONS = 1100


def _clamped(u: float) -> float:
    return min(max(u, _EDGE), 1.0 - _EDGE)


def normal_quantile(u: float, mu: float = 0.0, sigma: float = 1.0) -> float:
    """The value below which a normal(mu, sigma) falls with probability ``u``."""
    if sigma == 0:
        return mu
    return NormalDist(mu, sigma).inv_cdf(_clamped(u))


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    total, plus, minus = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - total * x / plus
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, _CONTINUED_FRACTION_TERMS + 1):
        for numerator in (
            m * (b - m) * x / ((minus + 2 * m) * (a + 2 * m)),
            -(a + m) * (total + m) * x / ((a + 2 * m) * (plus + 2 * m)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            step = d * c
            result *= step
        if abs(step - 1.0) < 1e-16:
            break
    return result


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function I_x(a, b): P(X <= x) for X ~ beta(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def _beta_lower_quantile(u: float, a: float, b: float) -> float:
    """beta_quantile for u <= 0.5, by bisection down to the spacing of doubles."""
    low, high = 0.0, 1.0
    for _ in range(_BISECTIONS):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if beta_cdf(middle, a, b) < u:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def beta_quantile(u: float, a: float = 1.0, b: float = 1.0) -> float:
    """The value below which a beta(a, b) falls with probability ``u`` (a, b > 0).

    Above the median it is ``1 - quantile(1 - u)`` of beta(b, a), which keeps the
    precision of values close to 1.
    """
    u = _clamped(u)
    if u > 0.5:
        return 1.0 - _beta_lower_quantile(1.0 - u, b, a)
    return _beta_lower_quantile(u, a, b)
