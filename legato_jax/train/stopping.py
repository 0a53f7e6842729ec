"""Early-stopping rules, one validation value per epoch: (reference, count) in, (reference, count)
out; training stops once count reaches the patience. Pure host functions, stored in the training
state so that a resumed run decides as an uninterrupted one would."""

from __future__ import annotations

import math

RULES = ("nequip", "relative")


def nequip_rule(reference: float, count: int, value: float, delta: float) -> tuple[float, int]:
    """nequip 0.5's `EarlyStopping` (cumulative_delta False): a value more than `delta` (absolute)
    below the reference resets the count; any other value counts one epoch, and lowers the
    reference if it is below it (so many small gains still end the run). The first value
    (reference inf) only sets the reference."""
    if math.isinf(reference):
        return value, count
    if value >= reference - delta:
        return min(reference, value), count + 1
    return value, 0


def relative_rule(reference: float, count: int, value: float, delta: float) -> tuple[float, int]:
    """Epochs since the best value improved by more than a fraction `delta`; the reference is the
    best value seen."""
    if value < reference * (1.0 - delta):
        return value, 0
    return min(reference, value), count + 1


def early_stopping(rule: str):
    """The rule named `rule` (one of RULES)."""
    return {"nequip": nequip_rule, "relative": relative_rule}[rule]
