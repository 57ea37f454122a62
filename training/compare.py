"""Train several architectures the same way, tabulate them beside the study, and pick the best."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from training import architectures, data, report
from training.train import RunResult, TrainConfig, load_best, train

COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"


def _row(result: RunResult) -> dict[str, Any]:
    arch = result.config.arch
    study = architectures.STUDY_REPORTED.get(arch)
    production = arch == architectures.PRODUCTION_ARCHITECTURE
    return {
        "arch": arch,
        "study_name": architectures.STUDY_NAMES.get(arch, "production" if production else ""),
        "params": result.params,
        "train_accuracy": result.train_accuracy,
        "val_accuracy": result.val_accuracy,
        "test_accuracy": result.test_accuracy,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "wall_time_s": result.wall_time_s,
        "augment": result.config.augment,
        "batch_size": result.config.batch_size,
        "run_dir": str(result.run_dir),
        "study_train_val_test": list(study) if study else None,
    }


def load_rows(reports_dir: Path) -> list[dict[str, Any]]:
    """The comparison rows written so far (none before the first)."""
    path = Path(reports_dir) / COMPARISON_JSON
    return json.loads(path.read_text())["rows"] if path.exists() else []


def select_best(rows: list[dict[str, Any]], among: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The study's objective: the lowest validation error (never the test set)."""
    candidates = [r for r in rows if among is None or r["arch"] in among]
    return max(candidates, key=lambda r: r["val_accuracy"])


def write_tables(rows: list[dict[str, Any]], reports_dir: Path, note: str = "") -> dict[str, Any]:
    """comparison.json and comparison.md from the rows, the study's best marked as selected."""
    reports_dir = Path(reports_dir)
    order = {name: i for i, name in enumerate(architectures.ARCHITECTURES)}
    rows = sorted(rows, key=lambda r: order.get(r["arch"], len(order)))
    best_study = (
        select_best(rows, architectures.STUDY_ARCHITECTURES)
        if any(r["arch"] in architectures.STUDY_ARCHITECTURES for r in rows)
        else None
    )
    payload = {"rows": rows, "selected_study_model": best_study["arch"] if best_study else None, "note": note}
    (reports_dir / COMPARISON_JSON).write_text(json.dumps(payload, indent=2) + "\n")

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f}"

    lines = [
        "# Architecture comparison",
        "",
        "Same data for every model: 50,000 train / 10,000 validation (seeded, stratified split of the",
        "60,000 training images); the 10,000 test images are used only for the last three columns'",
        "test figure, never for selection or early stopping. Accuracies are measured on the",
        "best-validation-loss checkpoint (dropout off).",
        "",
        "| model | study name | params | train % | val % | test % | epochs (best) | wall s | study train/val/test % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        study = "/".join(f"{v:g}" for v in r["study_train_val_test"]) if r["study_train_val_test"] else "n/a"
        marker = " **selected**" if best_study and r["arch"] == best_study["arch"] else ""
        lines.append(
            f"| `{r['arch']}`{marker} | {r['study_name']} | {r['params']:,} | {pct(r['train_accuracy'])} | "
            f"{pct(r['val_accuracy'])} | {pct(r['test_accuracy'])} | {r['epochs_run']} ({r['best_epoch']}) | "
            f"{r['wall_time_s']:.0f} | {study} |"
        )
    if best_study:
        lines += [
            "",
            (
                f"Selected among the study's architectures by validation error: `{best_study['arch']}` "
                f"(validation {pct(best_study['val_accuracy'])} %, test {pct(best_study['test_accuracy'])} %)."
            ),
            "",
            "![prediction grid](prediction_grid.png)",
            "",
            "![confusion matrix](confusion_matrix.png)",
        ]
    if note:
        lines += ["", note]
    lines += ["", "Learning curves: `curves/<model>.png`."]
    (reports_dir / COMPARISON_MD).write_text("\n".join(lines) + "\n")
    return payload


def selected_model_figures(run_dir: Path, reports_dir: Path) -> None:
    """Prediction grid (15 test images) and confusion matrix for one trained model."""
    dataset = data.load_fashion_mnist()
    model = load_best(run_dir)
    probs = model.predict(data.to_model_inputs(dataset.x_test), batch_size=1024, verbose=0)
    predicted = np.argmax(probs, axis=1)
    report.prediction_grid(dataset.x_test, dataset.y_test, predicted, Path(reports_dir) / "prediction_grid.png")
    matrix = report.confusion_matrix(dataset.y_test, predicted)
    report.confusion_matrix_plot(matrix, Path(reports_dir) / "confusion_matrix.png", title=f"{model.name}: test set")
    (Path(reports_dir) / "confusion_matrix.md").write_text(report.per_class_table(matrix) + "\n")


def add_result(result: RunResult, reports_dir: Path, note: str = "") -> dict[str, Any]:
    """Add or replace one model's row, keeping the rows others wrote meanwhile."""
    reports_dir = Path(reports_dir)
    (reports_dir / "curves").mkdir(parents=True, exist_ok=True)
    report.learning_curves(
        result.history, reports_dir / "curves" / f"{result.config.arch}.png", title=result.config.arch
    )
    rows = {r["arch"]: r for r in load_rows(reports_dir)}
    rows[result.config.arch] = _row(result)
    return write_tables(list(rows.values()), reports_dir, note or _saved_note(reports_dir))


def add_served_model(metadata: dict[str, Any], reports_dir: Path) -> dict[str, Any]:
    """Add or replace the row of the exported model the service loads: what it serves (flip
    averaging, every ensemble member) can differ from any one training run's row."""
    members = metadata.get("ensemble_members") or [{"training": metadata["training"]}]
    unsure = sum(1 for m in members if m.get("unsure_only"))
    how = [f"{len(members) - unsure} networks averaged"] if len(members) - unsure > 1 else []
    how += ["flip averaging"] if metadata.get("tta_flip") else []
    how += [f"flip averaging below p = {metadata['flip_below']:g}"] if metadata.get("flip_below") is not None else []
    how += [f"{unsure} more network{'s' if unsure > 1 else ''} there"] if unsure else []
    how += ["trained on all 60,000, calibrated by its held-out twin"] if metadata.get("calibrated_by") else []
    row = {
        "arch": f"fashion-cnn v{metadata['version']}",
        "study_name": "production, served" + (f" ({', '.join(how)})" if how else ""),
        "params": metadata["params"],
        # run.json measured the train split through one network, one view: not what is served
        "train_accuracy": None if how else metadata["train_accuracy"],
        "val_accuracy": metadata["validation_accuracy"],
        "test_accuracy": metadata["test_accuracy"],
        "epochs_run": max(m["training"]["epochs_run"] for m in members),
        "best_epoch": max(m["training"]["best_epoch"] for m in members),
        "wall_time_s": sum(m["training"]["wall_time_s"] for m in members),
        "augment": all(m["training"]["augment"] for m in members),
        "batch_size": metadata["training"]["batch_size"],
        "run_dir": ", ".join(m.get("run", "") for m in members),
        "study_train_val_test": None,
    }
    rows = {r["arch"]: r for r in load_rows(reports_dir) if not r["arch"].startswith("fashion-cnn v")}
    rows[row["arch"]] = row
    return write_tables(list(rows.values()), Path(reports_dir), _saved_note(reports_dir))


def _saved_note(reports_dir: Path) -> str:
    path = Path(reports_dir) / COMPARISON_JSON
    return json.loads(path.read_text()).get("note", "") if path.exists() else ""


def load_run(run_dir: Path) -> RunResult:
    """A finished run as train returned it, from its run.json."""
    saved = json.loads((Path(run_dir) / "run.json").read_text())
    saved["run_dir"] = Path(run_dir)
    saved["config"] = TrainConfig(**saved["config"])
    return RunResult(**saved)


def _finished_run(run_dir: Path, config: TrainConfig) -> RunResult | None:
    """A run that already finished with this exact config (so --resume does not train it again)."""
    run_file = run_dir / "run.json"
    if not run_file.exists():
        return None
    if json.loads(run_file.read_text())["config"] != asdict(config):
        return None
    return load_run(run_dir)


def compare(
    archs: list[str], base: TrainConfig, runs_dir: Path, reports_dir: Path, resume: bool = False, note: str = ""
) -> dict[str, Any]:
    """Train each architecture the same way (finished ones skipped with ``resume``), tabulate, select."""
    for arch in archs:
        replace(base, arch=arch).validate()
    reports_dir = Path(reports_dir)
    for arch in archs:
        config = replace(base, arch=arch)
        finished = _finished_run(Path(runs_dir) / arch, config) if resume else None
        result = finished or train(config, Path(runs_dir) / arch, resume=resume)
        add_result(result, reports_dir, note)  # after each model: progress survives a stop
    rows = {r["arch"]: r for r in load_rows(reports_dir)}
    payload = write_tables(list(rows.values()), reports_dir, note)
    if payload["selected_study_model"]:
        best = rows[payload["selected_study_model"]]
        selected_model_figures(Path(best["run_dir"]), reports_dir)
    return payload
