"""Confidence a warehouse can act on: temperature scaling, ECE, and their figures for a run.

The temperature and the review threshold (training.sorting) are chosen on the validation split;
the test split only reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from contract.seasons import default_season_of_class
from training import data
from training.sorting import MAX_WRONG_BIN_RATE, choose_review_threshold, risk_coverage, sorting_figures

ECE_BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
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


def risk_coverage_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], threshold_points: dict, path: Path) -> Path:
    from training.report import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, (coverage, risk) in curves.items():
        ax.plot(coverage * 100, risk * 100, label=name)
    for name, (coverage, risk) in threshold_points.items():
        ax.scatter([coverage * 100], [risk * 100], zorder=3, label=f"{name} at review threshold")
    ax.axhline(MAX_WRONG_BIN_RATE * 100, color="gray", linestyle="--", linewidth=1, label="1 % wrong-bin bound")
    ax.set_xlabel("coverage: items sorted automatically (%)")
    ax.set_ylabel("wrong-bin items (% of all items)")
    ax.set_title("Season-bin risk vs coverage")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def reliability_plot(before: np.ndarray, after: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    from training.report import _pyplot, _save

    plt = _pyplot()
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
    return _save(fig, path)


def _report_on_test(
    test_logits,
    test_labels,
    temperature: float,
    threshold: float,
    val_curve: tuple | None = None,
    out_dir: Path | None = None,
) -> dict:
    """Test ECE and sorting figures at a temperature and threshold chosen elsewhere; with
    ``out_dir``, the reliability and risk-coverage figures (plus the validation curve, if given)."""
    test_before, test_after = softmax(test_logits), softmax(test_logits, temperature)
    test_sorting = sorting_figures(test_after, test_labels, threshold)
    if out_dir is not None:
        curves, points = {}, {}
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


def calibrate_logits(val_logits, val_labels, test_logits, test_labels, out_dir: Path | None = None) -> dict:
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


def model_logits(
    models, images: np.ndarray, tta_flip: bool = False, flip_below: float | None = None, unsure_models=()
) -> np.ndarray:
    """Logits as the exported graph computes them: one model's, or the mean over an ensemble's
    members; averaged with the mirrored image's for every image (``tta_flip``) or for those whose
    top-class probability (uncalibrated) is below ``flip_below``. ``unsure_models`` join the mean,
    on both views, for those unsure images only."""
    from training.architectures import logits_model
    from training.export import check_flip_below

    check_flip_below(flip_below, tta_flip, bool(unsure_models))
    members = [logits_model(m) for m in (models if isinstance(models, (list, tuple)) else [models])]
    unsure_members = [logits_model(m) for m in unsure_models]
    inputs = data.to_model_inputs(images)

    def logits_sum(networks, view: np.ndarray) -> np.ndarray:
        return np.sum([m.predict(view, batch_size=1024, verbose=0) for m in networks], axis=0)

    logits = logits_sum(members, inputs) / len(members)
    if tta_flip:
        return (logits + logits_sum(members, inputs[:, :, ::-1]) / len(members)) / 2
    if flip_below is not None:
        unsure = softmax(logits).max(axis=1) < flip_below
        if unsure.any():
            view, mirrored = inputs[unsure], inputs[unsure][:, :, ::-1]
            total = logits[unsure] * len(members) + logits_sum(members, mirrored)
            if unsure_members:
                total += logits_sum(unsure_members, view) + logits_sum(unsure_members, mirrored)
            logits[unsure] = total / (2 * (len(members) + len(unsure_members)))
    return logits


# Settings that do not change what a network learns: a run and its held-out twin may differ in them.
_NOT_RECIPE = ("full_train", "histograms", "patience")


def _recipe(config: dict) -> dict:
    """The settings that shape the network; those a run predates take their defaults."""
    from dataclasses import MISSING, fields

    from training.train import TrainConfig

    defaults = {
        f.name: f.default if f.default is not MISSING else f.default_factory()
        for f in fields(TrainConfig)
        if f.default is not MISSING or f.default_factory is not MISSING
    }
    return {k: v for k, v in {**defaults, **config}.items() if k not in _NOT_RECIPE}


def _member_configs(run_dirs: list[Path]) -> list[dict]:
    configs = []
    for member in run_dirs:
        if not (member / "best.keras").exists():
            raise ValueError(f"{member} has no best.keras; train it first")
        configs.append(json.loads((member / "config.json").read_text()))
    return configs


def _params(run_dirs: list[Path]) -> list[int | None]:
    return [
        json.loads((member / "run.json").read_text()).get("params") if (member / "run.json").exists() else None
        for member in run_dirs
    ]


def calibrate_run(
    run_dir: Path,
    out_dir: Path | None = None,
    tta_flip: bool = False,
    ensemble_with: list[Path] = (),
    held_out_twin: Path | None = None,
    flip_below: float | None = None,
    unsure_with: list[Path] = (),
) -> dict:
    """Calibrate a finished run (with ``ensemble_with``: the ensemble of it and those runs, logits
    averaged; ``unsure_with``: runs that join that mean only for the images the ensemble is unsure
    of, below ``flip_below``); writes run_dir/calibration.json (export reads it) and the figures.

    Runs trained on all 60,000 images (``full_train``) have no clean validation split; they take the
    temperature and review threshold of ``held_out_twin``, a calibrated run (ensemble) of the same
    recipes trained on the 50,000 only, and are measured on test."""
    from training.export import check_flip_below

    check_flip_below(flip_below, tta_flip, bool(unsure_with))
    run_dirs, unsure_dirs = [Path(run_dir), *map(Path, ensemble_with)], [Path(p) for p in unsure_with]
    configs, unsure_configs = _member_configs(run_dirs), _member_configs(unsure_dirs)
    graph = {"tta_flip": tta_flip, "flip_below": flip_below}
    if held_out_twin is not None:
        return _calibrate_from_twin(
            run_dirs, unsure_dirs, configs + unsure_configs, Path(held_out_twin), out_dir, graph
        )
    from training.train import load_best

    split_seeds = {c.get("split_seed", data.DEFAULT_SPLIT_SEED) for c in configs + unsure_configs}
    if len(split_seeds) > 1 or any(c.get("full_train") for c in configs + unsure_configs):
        # Calibrating on images a member trained on would make the ensemble look surer than it is.
        raise ValueError("ensemble members must share one validation split and none may train on it")
    split = data.split_train_validation(data.load_fashion_mnist(), seed=split_seeds.pop())
    models, unsure_models = [load_best(member) for member in run_dirs], [load_best(member) for member in unsure_dirs]
    val_logits = model_logits(models, split.x_val, unsure_models=unsure_models, **graph)
    test_logits = model_logits(models, split.x_test, unsure_models=unsure_models, **graph)
    result = calibrate_logits(val_logits, split.y_val, test_logits, split.y_test, out_dir or run_dirs[0])
    result.update(graph)
    result["ensemble_with"] = [str(member) for member in run_dirs[1:]]
    result["unsure_with"] = [str(member) for member in unsure_dirs]
    result["validation_accuracy"] = float(np.mean(val_logits.argmax(axis=1) == split.y_val))
    result["test_accuracy"] = float(np.mean(test_logits.argmax(axis=1) == split.y_test))
    (run_dirs[0] / "calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _calibrate_from_twin(
    run_dirs: list[Path],
    unsure_dirs: list[Path],
    configs: list[dict],
    twin_dir: Path,
    out_dir: Path | None,
    graph: dict,
) -> dict:
    from training.train import load_best

    if not all(c.get("full_train") for c in configs):
        raise ValueError(
            "a held-out twin calibrates runs trained on all 60,000 images (--full-train) only; "
            "calibrate this one on the validation split"
        )
    twin_file = twin_dir / "calibration.json"
    if not twin_file.exists():
        raise ValueError(f"{twin_dir} has no calibration.json; calibrate it first")
    twin = json.loads(twin_file.read_text())
    twin_dirs = [twin_dir, *map(Path, twin.get("ensemble_with", []))]
    twin_unsure_dirs = [Path(p) for p in twin.get("unsure_with", [])]
    twin_configs = _member_configs(twin_dirs + twin_unsure_dirs)
    # The architecture's name does not pin its widths (they have changed); the parameter count does.
    if (
        [_recipe(c) for c in configs] != [_recipe(c) for c in twin_configs]
        or _params(run_dirs + unsure_dirs) != _params(twin_dirs + twin_unsure_dirs)
        or len(unsure_dirs) != len(twin_unsure_dirs)
    ):
        raise ValueError(
            f"the held-out twin ({', '.join(map(str, twin_dirs + twin_unsure_dirs))}) must be the same "
            "recipes, member for member in the same order and the same ones unsure-only"
        )
    twin_graph = {"tta_flip": bool(twin.get("tta_flip")), "flip_below": twin.get("flip_below")}
    if twin_graph != graph:
        raise ValueError(
            f"the held-out twin was calibrated with tta_flip={twin_graph['tta_flip']}, "
            f"flip_below={twin_graph['flip_below']}; calibrate this run the same way"
        )
    if any(c.get("full_train") for c in twin_configs):
        raise ValueError(f"the held-out twin {twin_dir} itself trained on the validation split")
    dataset = data.load_fashion_mnist()
    test_logits = model_logits(
        [load_best(member) for member in run_dirs],
        dataset.x_test,
        unsure_models=[load_best(member) for member in unsure_dirs],
        **graph,
    )
    temperature, threshold = twin["temperature"], twin["review_threshold"]
    result = {
        "temperature": temperature,
        "ece_bins": ECE_BINS,
        "review_threshold": threshold,
        "max_wrong_bin_rate": MAX_WRONG_BIN_RATE,
        "season_of_class": default_season_of_class(),
        **_report_on_test(test_logits, dataset.y_test, temperature, threshold, out_dir=out_dir or run_dirs[0]),
        **graph,
        "ensemble_with": [str(member) for member in run_dirs[1:]],
        "unsure_with": [str(member) for member in unsure_dirs],
        # Its own validation figures would be measured on images it trained on: there are none.
        "validation_accuracy": None,
        "test_accuracy": float(np.mean(test_logits.argmax(axis=1) == dataset.y_test)),
        "calibrated_by": {
            "runs": [str(member) for member in twin_dirs + twin_unsure_dirs],
            **{
                k: twin[k]
                for k in (
                    "validation_accuracy",
                    "test_accuracy",
                    "ece_validation_before",
                    "ece_validation_after",
                    "sorting_validation",
                )
            },
        },
    }
    (run_dirs[0] / "calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
