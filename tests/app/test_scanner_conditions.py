"""Scanner photos end to end (preprocessing, model, policy) on a small rendered set per condition,
from both renderers, with floors that a regression in segmentation, the quality gate or the model
would break.

The full measurements are `python -m bench scanner` (2,000 photos per condition, docs/scanner.md)
and `scanner-second` (docs/performance.md#a-second-renderer); this is their smallest honest subset:
5 test images per class, the same seeds every run.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from app.config import DEFAULT_POLICY_FILE
from app.inference import preprocess
from app.policy import load_policy
from app.reasons import Reason, before_policy
from bench.garment import EMPTY
from bench.photos import load_test_set
from bench.scanner import renderer, stratified
from contract.classes import CLASS_NAMES
from contract.seasons import default_season_of_class

PER_CLASS = 5
RENDERERS = ("first", "second")
Floors = tuple[float, int, float]  # top-1 at least, wrong bin without review at most (of 50), review share at most
# Measured on this set with model version 9. First renderer: top-1 90-96 % in every condition,
# review 10-24 %, the wrong bin at most 2 of 50 (before segmentation, the dark belt scored 38 %
# top-1 and sent 26 % to the wrong bin). The floors leave room for another CPU's float rounding
# (a photo or two), not for a real regression.
FIRST_FLOORS: Floors = (0.80, 3, 0.40)
# Second renderer (top-1, review, wrong bin): light belt 88 %, 18 %, 0; mid-grey 92 %, 24 %, 1;
# grooved black rubber 70 %, 60 %, 1; woven 96 %, 24 %, 1. Before the belt was refitted over the
# whole frame and smooth regions on a grooved belt were kept (2026-12-02) they were 80 %, 32 %, 0;
# 90 %, 28 %, 2; 56 %, 68 %, 2; 84 %, 26 %, 2: the light, rubber and woven belts' floors fail there.
SECOND_FLOORS: dict[str, Floors] = {
    "light belt": (0.84, 1, 0.26),
    "mid-grey belt": (0.86, 2, 0.32),
    "grooved black rubber belt": (0.62, 2, 0.66),
    "woven coloured belt": (0.88, 2, 0.34),
}
NO_GARMENT_SECOND = 46  # of its 50 empty belts: 48 measured


def _seen(job: tuple[str, str, int, int]) -> preprocess.ModelInput:
    renderer_name, condition, index, seed = job
    images, _ = load_test_set()
    return preprocess.preprocess(renderer(renderer_name)[0](condition, images[index], seed), 40_000_000)


def _decided(renderer_name: str, tf_model) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, list]]:
    """condition -> (top-1 hits, review flags, wrong-bin flags, the decisions) for 50 photos."""
    _, labels = load_test_set()
    chosen = stratified(labels, PER_CLASS)
    policy = load_policy(DEFAULT_POLICY_FILE, tf_model.class_names, metadata_review_threshold=tf_model.review_threshold)
    season_of = default_season_of_class()
    truth = np.array([season_of[CLASS_NAMES[label]] for label in labels[chosen]])
    out = {}
    with ProcessPoolExecutor(2) as pool:
        for number, condition in enumerate(renderer(renderer_name)[1]):
            jobs = [(renderer_name, condition, int(i), 1000 * number + int(i)) for i in chosen]
            seen = list(pool.map(_seen, jobs, chunksize=8))
            inference = tf_model.infer(np.stack([s.pixels for s in seen]))
            decisions = [
                policy.decide(row, dt.date(2026, 11, 30), before_policy(s.reasons, bool(odd)))
                for row, s, odd in zip(inference.probabilities, seen, inference.unfamiliar, strict=True)
            ]
            review = np.array([d.needs_review for d in decisions])
            wrong = np.array([d.season for d in decisions]) != truth
            top1 = inference.probabilities.argmax(axis=1) == labels[chosen]
            out[condition] = (top1, review, wrong & ~review, decisions)
    return out


@pytest.fixture(scope="module")
def decided(tf_model):
    """renderer -> its conditions' outcomes, each renderer's photos made and decided once."""
    cache: dict[str, dict] = {}

    def of(renderer_name: str) -> dict:
        if renderer_name not in cache:
            cache[renderer_name] = _decided(renderer_name, tf_model)
        return cache[renderer_name]

    return of


@pytest.mark.parametrize(
    ("renderer_name", "condition"),
    [(name, condition) for name in RENDERERS for condition in renderer(name)[1] if condition != EMPTY],
)
def test_each_condition_keeps_its_floors(decided, renderer_name, condition):
    min_top1, max_wrong_bin, max_review_share = FIRST_FLOORS if renderer_name == "first" else SECOND_FLOORS[condition]
    top1, review, wrong_bin, _ = decided(renderer_name)[condition]
    assert top1.mean() >= min_top1, f"{condition}: top-1 {top1.mean():.2f}"
    assert wrong_bin.sum() <= max_wrong_bin, f"{condition}: {wrong_bin.sum()} in the wrong bin"
    assert review.mean() <= max_review_share, f"{condition}: {review.mean():.2f} sent to review"


def test_every_empty_belt_goes_to_review_as_no_garment(decided):
    _, review, _, decisions = decided("first")[EMPTY]
    assert review.all()
    assert all(Reason.NO_GARMENT in d.reasons for d in decisions)


def test_every_empty_belt_of_the_second_renderer_goes_to_review(decided):
    """Not all as `no_garment` yet: on the grooved and woven belts the texture still makes pieces
    (48 of 50 are `no_garment`), and low confidence sends them to review."""
    _, review, _, decisions = decided("second")[EMPTY]
    assert review.all()
    assert sum(Reason.NO_GARMENT in d.reasons for d in decisions) >= NO_GARMENT_SECOND
