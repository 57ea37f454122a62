"""Why an item goes to the review bin: the codes are part of the wire contract (``contract.reasons``,
re-exported here); what the service adds is the order it finds them in."""

from __future__ import annotations

from contract.reasons import Reason as Reason


def before_policy(photo: tuple[Reason, ...], unfamiliar: bool) -> tuple[Reason, ...]:
    """An answer's reasons from the photo and the model; the policy adds low_confidence itself."""
    return (*photo, Reason.UNFAMILIAR) if unfamiliar else photo
