"""The `unfamiliar` score: how unlike the training images the model finds an input.

The energy score (Liu et al., 2020, "Energy-based Out-of-distribution Detection"): the negative
log-sum-exp of the graph's logits output, before any temperature. It is high where no class's
logit stands out, and it is what the softmax's confidence throws away: a photo the model has never
seen the like of can still get a confident-looking probability. Training chooses the threshold
(a high quantile of the score over clean validation images, written to metadata.json); the service
flags every input at or over it. Both sides compute the score with this one function.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SCORE = "energy"
DEFAULT_TRIP_RATE = 0.01  # the share of clean validation images the threshold lets trip it


def energy(logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(n, classes) logits -> (n,) energy, -logsumexp(logits); higher is less familiar."""
    values = np.asarray(logits, dtype=np.float64)
    top = values.max(axis=1, keepdims=True)
    result: npt.NDArray[np.float64] = -(top[:, 0] + np.log(np.exp(values - top).sum(axis=1)))
    return result


def threshold_for(scores: npt.ArrayLike, trip_rate: float = DEFAULT_TRIP_RATE) -> float:
    """The smallest threshold that at most ``trip_rate`` of these (clean) scores reach."""
    values = np.sort(np.asarray(scores, dtype=np.float64))
    if values.size == 0:
        raise ValueError("no scores to calibrate on")
    allowed = int(np.floor(trip_rate * values.size))  # this many may reach the threshold
    index = values.size - allowed - 1
    # Just above the highest score that must stay below it (ties included).
    return float(np.nextafter(values[index], np.inf))
