"""Why an item goes to the review bin: stable, machine-readable codes (the answer's review_reasons).

A scanner or a review station may branch on these values; they are never renamed. The order here is
the order they are listed in an answer: what the photo shows first, then what the model says.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    NO_GARMENT = "no_garment"  # nothing on the belt but the belt (and perhaps a label)
    MULTIPLE_ITEMS = "multiple_items"  # a second object as large as a garment
    CUT_OFF = "cut_off"  # the garment runs over the frame's edge
    LOW_CONTRAST = "low_contrast"  # the garment barely stands out from the belt
    LOW_CONFIDENCE = "low_confidence"  # the best season's probability mass is below the threshold
    UNFAMILIAR = "unfamiliar"  # the model's input is unlike anything it was trained on

    @classmethod
    def ordered(cls, reasons: set[Reason] | tuple[Reason, ...]) -> tuple[Reason, ...]:
        return tuple(r for r in cls if r in reasons)
