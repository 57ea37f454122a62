"""docs/gpu.md from the GPU check's figures (bench.gpu_check): headlines, then one section per measurement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

OFFLINE_COMMAND = "PYTHONUNBUFFERED=1 python3 -m bench gpu-check --offline --carry .gpu 2>&1 | tee gpu-check.log"


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _gpu(results: dict[str, Any]) -> str:
    gpus = results.get("gpus") or []
    if not gpus:
        return "none (measured on the CPU with --allow-cpu)"
    return "; ".join(f"{g['name']} ({g['memory']}, driver {g['driver']})" for g in gpus)


def _path(results: dict[str, Any]) -> str:
    if results["path"] == "tensorflow":
        return "the service on TensorFlow"
    return f"fallback: Keras 3 on {results['device']['backend']}, without the service"


def _best(rows: dict[int, float]) -> tuple[int, float]:
    size = max(rows, key=lambda s: rows[s])
    return size, rows[size]


def _savedmodel_rows(results: dict[str, Any]) -> dict[str, dict[int, float]]:
    figures = results["savedmodel"]["images_per_s"]
    return {precision: {int(size): rate for size, rate in rows.items()} for precision, rows in figures.items()}


def _epochs_line(train: dict[str, Any]) -> str:
    times = train["epoch_s"]
    first = f"epoch 1 {times[0]:.1f} s (with tracing and compilation)"
    later = f", epoch 2 {times[1]:.1f} s = {train['images'] / times[1]:,.0f} images/s" if len(times) > 1 else ""
    return f"{first}{later}"


def _why_not(results: dict[str, Any], part: str) -> str:
    """Why a part has no figures: the failure bench.gpu_check recorded."""
    reason: str = results.get("failed", {}).get(part, "not run")
    return reason


def headlines(results: dict[str, Any]) -> list[str]:
    """A few lines: the device, the best raw rate, HTTP at the highest concurrency, the epoch."""
    lines = [f"GPU: {_gpu(results)}; path: {_path(results)}", f"computes on: {results['device']['device']}"]
    if "savedmodel" not in results and "ensemble" not in results:
        lines.append(f"raw images/s: not measured ({_why_not(results, 'raw')})")
    if "savedmodel" in results:
        for precision, rows in _savedmodel_rows(results).items():
            size, rate = _best(rows)
            lines.append(
                f"SavedModel {precision}: {_rate(rows[min(rows)])} images/s at batch {min(rows)},"
                f" best {_rate(rate)} at batch {size}"
            )
    if "ensemble" in results:
        rows = results["ensemble"]["rows"]
        for column, name in (("ensemble", "served ensemble"), ("network", "one network")):
            best = max(rows, key=lambda r: r[column])
            lines.append(
                f"{name} (Keras): {_rate(rows[0][column])} images/s at batch {rows[0]['batch']},"
                f" best {_rate(best[column])} at batch {best['batch']}"
            )
    http = results.get("http", {})
    if "rows" in http:
        for request in dict.fromkeys(r["request"] for r in http["rows"]):
            top = max(r["concurrency"] for r in http["rows"] if r["request"] == request)
            by_build = {r["build"]: r for r in http["rows"] if r["request"] == request and r["concurrency"] == top}
            lines.append(
                f"POST /classify {request} at c={top}: "
                + "; ".join(
                    f"{build} {_rate(r['requests_per_s'])}/s (p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms)"
                    for build, r in by_build.items()
                )
            )
    else:
        lines.append(http.get("skipped") or f"HTTP: not measured ({_why_not(results, 'http')})")
    if "train" in results:
        train = results["train"]
        lines.append(f"training {train['architecture']}, {train['images']:,} images an epoch: {_epochs_line(train)}")
    else:
        lines.append(f"training: not measured ({_why_not(results, 'train')})")
    return lines


def _introduction(results: dict[str, Any]) -> str:
    host = results["host"]
    device = results["device"]
    rows = [
        ("GPU (nvidia-smi)", _gpu(results)),
        ("path", _path(results)),
        ("framework", device["framework"]),
        ("device it computes on", device["device"]),
        ("host", f"{host['cpu']}; {host['os']}; Python {host['python']}"),
        ("command", f"`{results['command']}`"),
        ("plan", results["plan"]["name"]),
    ]
    notes = "".join(f"\n- {note}" for note in results.get("notes", []))
    return "\n".join(
        [
            "# GPU check",
            "",
            (
                f"Written by `make gpu-check` (`python -m bench gpu-check`, bench/gpu_check.py) on {results['date']},"
                f" in {results['elapsed_min']:.1f} minutes."
            ),
            "",
            "|  |  |",
            "| --- | --- |",
            *(_row(row) for row in rows),
            "",
            "## Headline figures",
            "",
            *(f"- {line}" for line in headlines(results)),
            *(["", "## How this path was chosen", notes] if notes else []),
        ]
    )


def _test_share(ensemble: dict[str, Any]) -> str:
    share = ensemble.get("test_second_look_share")
    return "" if share is None else f" (on the test split: {100 * share:.1f} %)"


def _raw_section(results: dict[str, Any]) -> str:
    lines = ["## Raw images/s by batch size", ""]
    if "savedmodel" not in results and "ensemble" not in results:
        lines.append(f"Not measured: {_why_not(results, 'raw')}.")
    if "savedmodel" in results:
        rows = _savedmodel_rows(results)
        precisions = list(rows)
        lines += [
            (
                f"The exported SavedModel (version {results['savedmodel']['version']}), its serving signature per"
                " precision called on test images, as `python -m training bench-model` does"
                f" ({results['plan']['seconds_per_size']:g} s per size after warm-up calls). The service serves"
                " float32 on a GPU (SORTER_PRECISION=auto)."
            ),
            "",
            _row(["batch", *(f"{p} images/s" for p in precisions)]),
            _row(["---:"] * (len(precisions) + 1)),
        ]
        for size in rows[precisions[0]]:
            lines.append(_row([size, *(_rate(rows[p][size]) for p in precisions)]))
    if "ensemble" in results:
        ensemble = results["ensemble"]
        accuracy = ensemble["accuracy"]
        lines += [
            (
                "The production architecture rebuilt in Keras (bench.gpu_weights): BatchNorm folded as export"
                f" folds it, weights: {ensemble['weights']}. *One network*: one member alone; *served ensemble*:"
                f" the version's {ensemble['networks']} networks as the service averages them (every image through"
                " the members, the unsure ones again mirrored and through the unsure-only member), the unsure ones"
                " gathered on the host between two compiled calls. The *second look* column is the share of the"
                f" batch that was unsure{_test_share(ensemble)}. Images: the {ensemble['images']}; the ensemble"
                " classified"
                f" {100 * accuracy['top1']:.2f} % of the first {accuracy['images']} right."
                f" {results['plan']['seconds_per_size']:g} s per size after warm-up calls."
            ),
            "",
            _row(["batch", "one network images/s", "served ensemble images/s", "second look"]),
            _row(["---:"] * 4),
        ]
        for row in ensemble["rows"]:
            lines.append(
                _row(
                    [
                        row["batch"],
                        _rate(row["network"]),
                        _rate(row["ensemble"]),
                        f"{100 * row['second_look_share']:.1f} %",
                    ]
                )
            )
    return "\n".join(lines)


def _http_section(results: dict[str, Any]) -> str:
    http = results.get("http", {})
    lines = ["## POST /classify over HTTP, batching on and off", ""]
    if "rows" not in http:
        return "\n".join([*lines, http.get("skipped") or f"Not measured: {_why_not(results, 'http')}."])
    plan = results["plan"]
    lines += [
        (
            "A real `garment-sorter serve` per build on a loopback port, wrk on the same machine sending one body over"
            f" and over ({plan['http_seconds']:g} s per point after {plan['http_warmup_s']:g} s of warm-up)."
            " *batching on*: the defaults (SORTER_MAX_BATCH_SIZE 64, SORTER_MAX_WAIT_MS 2); *batching off*:"
            " SORTER_MAX_BATCH_SIZE=1. The camera photo is a scanner render brought to 1600x1200 with sensor noise"
            " (bench.camera); the server decodes it and finds the garment on the CPU."
        ),
        "",
        _row(["request", "build", "concurrency", "images/s", "p50 ms", "p99 ms", "server CPU ms/request", "errors"]),
        _row(["---", "---", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ]
    for row in http["rows"]:
        cpu = row.get("server_cpu_ms_per_request")
        lines.append(
            _row(
                [
                    row["request"],
                    row["build"],
                    row["concurrency"],
                    _rate(row["requests_per_s"]),
                    f"{row['p50_ms']:.2f}",
                    f"{row['p99_ms']:.2f}",
                    f"{cpu:.2f}" if cpu is not None else "?",
                    row["errors"],
                ]
            )
        )
    return "\n".join(lines)


def _train_section(results: dict[str, Any]) -> str:
    if "train" not in results:
        return "\n".join(
            ["## Training epochs of the production recipe", "", f"Not measured: {_why_not(results, 'train')}."]
        )
    train = results["train"]
    augmentation = (
        "with the recipe's tf.data augmentation"
        if train["augmented"]
        else "without augmentation (the recipe's augmentation is TensorFlow's tf.data pipeline)"
        if train["recipe_augments"]
        else "without augmentation (as the recipe)"
    )
    lines = [
        "## Training epochs of the production recipe",
        "",
        (
            f"{train['architecture']} ({train['params']:,} parameters) as the served version was trained (its"
            f" metadata.json: {train['optimizer']}, batch {train['batch_size']}, the same loss and schedule), on"
            f" {train['images']:,} Fashion-MNIST training images an epoch ({train['steps']} steps), then its"
            f" {train['validation_images']:,} validation images, {augmentation}. Each epoch is timed from its first"
            " step to the end of its validation pass; the first includes tracing and compilation."
        ),
        "",
        _row(["epoch", "seconds", "training images/s"]),
        _row(["---:", "---:", "---:"]),
    ]
    for epoch, seconds in enumerate(train["epoch_s"], start=1):
        lines.append(_row([epoch, f"{seconds:.1f}", _rate(train["images"] / seconds)]))
    return "\n".join(lines)


def _reproduce_section() -> str:
    return "\n".join(
        [
            "## Reproduce",
            "",
            (
                "On a machine with an NVIDIA GPU and a package index: `make gpu-check` (installs the project into"
                " .venv, the dataset and wrk with apt, and `tensorflow[and-cuda]` of the installed version where"
                " TensorFlow sees no GPU; about 5 minutes after the installs). Without a GPU it says so and stops."
            ),
            "",
            (
                "On a machine without a package index (TensorFlow cannot be installed there), where JAX sees the GPU:"
                " here, `python -m bench gpu-check --prepare-carry .gpu` (needs TensorFlow) writes the carry folder:"
                " Keras' wheels for Python 3.12 on x86-64, the training split xz-compressed and the weight index"
                " (bench.gpu_carry). Copy the repository with `.gpu/` there and run, from its root:"
            ),
            "",
            "```bash",
            OFFLINE_COMMAND,
            "```",
        ]
    )


def report(results: dict[str, Any]) -> str:
    """docs/gpu.md: the machine and headlines, raw throughput, HTTP, training, how to reproduce."""
    sections = [
        _introduction(results),
        _raw_section(results),
        _http_section(results),
        _train_section(results),
        _reproduce_section(),
    ]
    return "\n\n".join(sections) + "\n"
