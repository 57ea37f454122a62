"""Review reasons: stable codes, one order, and what the photo and the model add."""

from __future__ import annotations

from app.reasons import Reason, before_policy


def test_the_codes_never_change():
    assert [str(reason) for reason in Reason] == [
        "no_garment",
        "multiple_items",
        "cut_off",
        "low_contrast",
        "low_confidence",
        "unfamiliar",
    ]


def test_reasons_are_listed_photo_first_then_policy_then_model():
    assert Reason.ordered({Reason.UNFAMILIAR, Reason.LOW_CONFIDENCE, Reason.CUT_OFF}) == (
        Reason.CUT_OFF,
        Reason.LOW_CONFIDENCE,
        Reason.UNFAMILIAR,
    )


def test_the_model_adds_unfamiliar_to_the_photo_reasons():
    assert before_policy((Reason.CUT_OFF,), unfamiliar=True) == (Reason.CUT_OFF, Reason.UNFAMILIAR)
    assert before_policy((Reason.CUT_OFF,), unfamiliar=False) == (Reason.CUT_OFF,)
    assert before_policy((), unfamiliar=False) == ()
