"""Confidence a warehouse can act on: temperature scaling, ECE, and their figures for a run.

The temperature and the review threshold (training.sorting) are chosen on the validation split;
the test split only reports.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import numpy as np

from contract.seasons import default_season_of_class
from training import data
from training.ensemble import Ensemble, predict_logits
from training.report import pyplot, save_figure
from training.sorting import MAX_WRONG_BIN_RATE, choose_review_threshold, risk_coverage, sorting_figures
from training.train import TrainConfig, load_best

ECE_BINS = 15
Curve = tuple[np.ndarray, np.ndarray]  # coverage, risk: training.sorting.risk_coverage
Point = tuple[float, float]  # coverage, risk at the review threshold
CALIBRATION_FILE = "calibration.json"  # in the run directory: what export serves
# Settings that do not change what a network learns: a run and its held-out twin may differ in them.
# A fine-tuned pair starts from different weights by design (each from its own version's network).
# unpacked: where `garment-sorter unpack` took a network from, not how it was trained.
# A distilled pair learns from different teachers by design (each from its own split's ensemble).
NOT_RECIPE = ("full_train", "histograms", "patience", "init_from", "unpacked", "teacher")
# The held-out twin's own figures that a full-train model's calibration quotes.
TWIN_FIGURES = (
    "validation_accuracy",
    "test_accuracy",
    "ece_validation_before",
    "ece_validation_after",
    "sorting_validation",
)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, shifted by each row's maximum so exp cannot overflow."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / temperature)."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, low: float = 0.05, high: float = 20.0) -> float:
    """Minimise validation NLL over T; NLL is unimodal in log T, so golden-section search suffices."""
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits, labels, np.exp(c)), nll(logits, labels, np.exp(d))
    for _ in range(80):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits, labels, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits, labels, np.exp(d))
    return float(np.exp((a + b) / 2))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def risk_coverage_plot(curves: dict[str, Curve], threshold_points: dict[str, Point], path: Path) -> Path:
    """Each split's risk-coverage curve, its point at the review threshold, and the 1 % bound."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, (coverages, risks) in curves.items():
        ax.plot(coverages * 100, risks * 100, label=name)
    for name, (coverage, risk) in threshold_points.items():
        ax.scatter([coverage * 100], [risk * 100], zorder=3, label=f"{name} at review threshold")
    ax.axhline(MAX_WRONG_BIN_RATE * 100, color="gray", linestyle="--", linewidth=1, label="1 % wrong-bin bound")
    ax.set_xlabel("coverage: items sorted automatically (%)")
    ax.set_ylabel("wrong-bin items (% of all items)")
    ax.set_title("Season-bin risk vs coverage")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def reliability_plot(before: np.ndarray, after: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    """Accuracy against confidence in the ECE bins, before and after temperature scaling."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    edges = np.linspace(0, 1, ECE_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    for name, probs in (("before", before), ("after", after)):
        confidence = probs.max(axis=1)
        correct = probs.argmax(axis=1) == labels
        index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, ECE_BINS - 1)
        acc = [correct[index == b].mean() if (index == b).any() else np.nan for b in range(ECE_BINS)]
        ax.plot(centres, acc, marker="o", label=f"{name}: ECE {expected_calibration_error(probs, labels):.2%}")
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability (test, 15 bins)")
    ax.legend()
    return save_figure(fig, path)


def _report_on_test(
    test_logits: np.ndarray,
    test_labels: np.ndarray,
    temperature: float,
    threshold: float,
    val_curve: tuple[Curve, Point] | None = None,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Test ECE and sorting figures at a temperature and threshold chosen elsewhere; with
    ``out_dir``, the reliability and risk-coverage figures (plus the validation curve, if given)."""
    test_before, test_after = softmax(test_logits), softmax(test_logits, temperature)
    test_sorting = sorting_figures(test_after, test_labels, threshold)
    if out_dir is not None:
        curves: dict[str, Curve] = {}
        points: dict[str, Point] = {}
        if val_curve is not None:
            curves["validation"], points["validation"] = val_curve
        curves["test"] = risk_coverage(test_after, test_labels)
        points["test"] = (1 - test_sorting["review_share"], test_sorting["wrong_bin_rate"])
        risk_coverage_plot(curves, points, Path(out_dir) / "risk_coverage.png")
        reliability_plot(test_before, test_after, test_labels, Path(out_dir) / "reliability.png")
    return {
        "ece_test_before": expected_calibration_error(test_before, test_labels),
        "ece_test_after": expected_calibration_error(test_after, test_labels),
        "sorting_test": test_sorting,
    }


def calibrate_logits(
    val_logits: np.ndarray,
    val_labels: np.ndarray,
    test_logits: np.ndarray,
    test_labels: np.ndarray,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Temperature and review threshold chosen on validation, with the figures they give on both
    splits; with ``out_dir``, the reliability and risk-coverage figures."""
    temperature = fit_temperature(val_logits, val_labels)
    val_probs = softmax(val_logits, temperature)
    threshold = choose_review_threshold(val_probs, val_labels)
    val_sorting = sorting_figures(val_probs, val_labels, threshold)
    val_curve = (risk_coverage(val_probs, val_labels), (1 - val_sorting["review_share"], val_sorting["wrong_bin_rate"]))
    return {
        "temperature": temperature,
        "ece_bins": ECE_BINS,
        "ece_validation_before": expected_calibration_error(softmax(val_logits), val_labels),
        "ece_validation_after": expected_calibration_error(val_probs, val_labels),
        "review_threshold": threshold,
        "max_wrong_bin_rate": MAX_WRONG_BIN_RATE,
        "season_of_class": default_season_of_class(),
        "sorting_validation": val_sorting,
        **_report_on_test(test_logits, test_labels, temperature, threshold, val_curve, out_dir),
    }


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of images whose top logit is their label."""
    return float(np.mean(logits.argmax(axis=1) == labels))


def read_calibration(run_dir: Path) -> dict[str, Any]:
    """A calibrated run's calibration.json; ValueError when it has none."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.exists():
        raise ValueError(f"{run_dir} has no {CALIBRATION_FILE}; calibrate it first")
    calibration: dict[str, Any] = json.loads(path.read_text())
    return calibration


def calibrated_runs(run_dir: Path, calibration: dict[str, Any]) -> Ensemble[Path]:
    """The runs and views a calibration describes: ``run_dir`` first, then its ensemble members."""
    return Ensemble(
        members=(Path(run_dir), *map(Path, calibration.get("ensemble_with", []))),
        unsure_members=tuple(map(Path, calibration.get("unsure_with", []))),
        tta_flip=bool(calibration.get("tta_flip", False)),
        flip_below=calibration.get("flip_below"),
    )


def recipe(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that shape the network; those a run predates take their defaults."""
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    defaults |= {f.name: f.default_factory() for f in fields(TrainConfig) if f.default_factory is not MISSING}
    settings = {**defaults, **config}
    # Which teacher is not the recipe, but whether there was one is: a distilled twin backs no untaught run.
    return {k: v for k, v in settings.items() if k not in NOT_RECIPE} | {"distilled": settings["teacher"] is not None}


def member_configs(run_dirs: tuple[Path, ...]) -> list[dict[str, Any]]:
    """Each finished run's config.json (calibrate and distill read a served ensemble's recipes)."""
    configs = []
    for member in run_dirs:
        if not (member / "best.keras").exists():
            raise ValueError(f"{member} has no best.keras; train it first")
        configs.append(json.loads((member / "config.json").read_text()))
    return configs


def _params(run_dirs: tuple[Path, ...]) -> list[int | None]:
    return [
        json.loads((member / "run.json").read_text()).get("params") if (member / "run.json").exists() else None
        for member in run_dirs
    ]


def _views(runs: Ensemble[Path]) -> dict[str, Any]:
    return {"tta_flip": runs.tta_flip, "flip_below": runs.flip_below}


def _run_lists(runs: Ensemble[Path]) -> dict[str, list[str]]:
    return {
        "ensemble_with": [str(member) for member in runs.members[1:]],
        "unsure_with": [str(member) for member in runs.unsure_members],
    }


def calibrate_run(
    runs: Ensemble[Path], out_dir: Path | None = None, held_out_twin: Path | None = None
) -> dict[str, Any]:
    """Calibrate finished runs served as ``runs`` says (one run is an ensemble of one): writes
    calibration.json into the first run (export reads it) and the figures into ``out_dir``
    (default: that run).

    Runs trained on all 60,000 images (``full_train``) have no clean validation split; they take the
    temperature and review threshold of ``held_out_twin``, a calibrated run (ensemble) of the same
    recipes trained on the 50,000 only, and are measured on test."""
    configs = member_configs(runs.networks)
    figures_dir = Path(out_dir) if out_dir is not None else runs.members[0]
    if held_out_twin is None:
        result = _calibrate_on_validation(runs, configs, figures_dir)
    else:
        result = _calibrate_from_twin(runs, configs, Path(held_out_twin), figures_dir)
    (runs.members[0] / CALIBRATION_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _calibrate_on_validation(runs: Ensemble[Path], configs: list[dict[str, Any]], figures_dir: Path) -> dict[str, Any]:
    split_seeds = {c.get("split_seed", data.DEFAULT_SPLIT_SEED) for c in configs}
    if len(split_seeds) > 1 or any(c.get("full_train") for c in configs):
        # Calibrating on images a member trained on would make the ensemble look surer than it is.
        raise ValueError("ensemble members must share one validation split and none may train on it")
    split = data.split_train_validation(data.load_fashion_mnist(), seed=split_seeds.pop())
    models = runs.map(load_best)
    val_logits, test_logits = predict_logits(models, split.x_val), predict_logits(models, split.x_test)
    return {
        **calibrate_logits(val_logits, split.y_val, test_logits, split.y_test, figures_dir),
        **_views(runs),
        **_run_lists(runs),
        "validation_accuracy": accuracy(val_logits, split.y_val),
        "test_accuracy": accuracy(test_logits, split.y_test),
    }


def _check_twin(
    runs: Ensemble[Path], configs: list[dict[str, Any]], twin_runs: Ensemble[Path], twin_configs: list[dict[str, Any]]
) -> None:
    """The twin must be the same networks, views and roles, trained without the validation split."""
    # The architecture's name does not pin its widths (they have changed); the parameter count does.
    if (
        [recipe(c) for c in configs] != [recipe(c) for c in twin_configs]
        or _params(runs.networks) != _params(twin_runs.networks)
        or len(runs.unsure_members) != len(twin_runs.unsure_members)
    ):
        raise ValueError(
            f"the held-out twin ({', '.join(map(str, twin_runs.networks))}) must be the same "
            "recipes, member for member in the same order and the same ones unsure-only"
        )
    if _views(twin_runs) != _views(runs):
        raise ValueError(
            f"the held-out twin was calibrated with tta_flip={twin_runs.tta_flip}, "
            f"flip_below={twin_runs.flip_below}; calibrate this run the same way"
        )
    if any(c.get("full_train") for c in twin_configs):
        raise ValueError(f"the held-out twin {twin_runs.members[0]} itself trained on the validation split")


def _calibrate_from_twin(
    runs: Ensemble[Path], configs: list[dict[str, Any]], twin_dir: Path, figures_dir: Path
) -> dict[str, Any]:
    if not all(c.get("full_train") for c in configs):
        raise ValueError(
            "a held-out twin calibrates runs trained on all 60,000 images (--full-train) only; "
            "calibrate this one on the validation split"
        )
    twin = read_calibration(twin_dir)
    twin_runs = calibrated_runs(twin_dir, twin)
    _check_twin(runs, configs, twin_runs, member_configs(twin_runs.networks))
    dataset = data.load_fashion_mnist()
    test_logits = predict_logits(runs.map(load_best), dataset.x_test)
    temperature, threshold = twin["temperature"], twin["review_threshold"]
    return {
        "temperature": temperature,
        "ece_bins": ECE_BINS,
        "review_threshold": threshold,
        "max_wrong_bin_rate": MAX_WRONG_BIN_RATE,
        "season_of_class": default_season_of_class(),
        **_report_on_test(test_logits, dataset.y_test, temperature, threshold, out_dir=figures_dir),
        **_views(runs),
        **_run_lists(runs),
        # Its own validation figures would be measured on images it trained on: there are none.
        "validation_accuracy": None,
        "test_accuracy": accuracy(test_logits, dataset.y_test),
        "calibrated_by": {
            "runs": [str(member) for member in twin_runs.networks],
            **{k: twin[k] for k in TWIN_FIGURES},
        },
    }
