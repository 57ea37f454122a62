"""The figures and tables people expect from a Fashion-MNIST study, drawn with matplotlib (Agg)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from contract.classes import CLASS_NAMES, NUM_CLASSES

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot() -> ModuleType:
    """matplotlib.pyplot drawing to files (Agg), imported on first use: the backend must be chosen
    before pyplot is imported, and the commands that draw nothing never pay for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: Path) -> Path:
    """Write a figure as PNG (creating its directory) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path


def first_image(image: np.ndarray, label: int, path: Path) -> Path:
    """The first training image with its colour bar, as the study showed it."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.2, 3.2))
    shown = ax.imshow(image, cmap="gray")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    ax.set_title(f"x_train[0]: {CLASS_NAMES[label]} ({label})")
    ax.set_xticks([])
    ax.set_yticks([])
    return save_figure(fig, path)


def sample_grid(images: np.ndarray, labels: np.ndarray, path: Path, rows: int = 3, cols: int = 3) -> Path:
    """The first rows x cols images titled with their class."""
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows))
    for ax, image, label in zip(axes.ravel(), images, labels, strict=False):
        ax.imshow(image, cmap="gray")
        ax.set_title(CLASS_NAMES[int(label)], fontsize=9)
        ax.axis("off")
    return save_figure(fig, path)


def class_distribution(labels_by_split: dict[str, np.ndarray], path: Path) -> Path:
    """Images per class, one bar chart per split."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(labels_by_split), figsize=(6 * len(labels_by_split), 4))
    for ax, (split_name, labels) in zip(np.atleast_1d(axes), labels_by_split.items(), strict=True):
        counts = np.bincount(labels, minlength=NUM_CLASSES)
        bars = ax.bar(range(NUM_CLASSES), counts, color="#4c72b0")
        ax.bar_label(bars, fontsize=7)
        ax.set_xticks(range(NUM_CLASSES), CLASS_NAMES, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("images")
        ax.set_title(f"{split_name}: {len(labels):,} images")
    return save_figure(fig, path)


def learning_curves(history: dict[str, list[float]], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train against validation."""
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        if metric in history:
            ax.plot(epochs, history[metric], label="train")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{title} learning curves".strip())
    return save_figure(fig, path)


def prediction_grid(
    images: np.ndarray, true: np.ndarray, predicted: np.ndarray, path: Path, count: int = 15, cols: int = 5
) -> Path:
    """The study's grid: each title "pred (true)", green when right, red when wrong."""
    plt = pyplot()
    rows = int(np.ceil(count / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows))
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= count:
            continue
        ax.imshow(images[i], cmap="binary")
        right = int(predicted[i]) == int(true[i])
        ax.set_title(
            f"{CLASS_NAMES[int(predicted[i])]} ({CLASS_NAMES[int(true[i])]})",
            color="green" if right else "red",
            fontsize=8,
        )
    return save_figure(fig, path)


def confusion_matrix(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Counts (10, 10): rows the true class, columns the predicted one."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(matrix, (true.astype(int), predicted.astype(int)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Each class's share of correct answers, from a confusion matrix (rows: true class)."""
    accuracy: np.ndarray = np.diag(matrix) / matrix.sum(axis=1)
    return accuracy


def confusion_matrix_plot(matrix: np.ndarray, path: Path, title: str = "") -> Path:
    """The confusion matrix with counts, each true class labelled with its accuracy."""
    plt = pyplot()
    accuracy = per_class_accuracy(matrix)
    fig, ax = plt.subplots(figsize=(8.5, 7.5))
    ax.imshow(matrix, cmap="Blues")
    threshold = matrix.max() / 2
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if matrix[i, j] > threshold else "black",
            )
    ax.set_xticks(range(NUM_CLASSES), CLASS_NAMES, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(
        range(NUM_CLASSES), [f"{n} ({a:.1%})" for n, a in zip(CLASS_NAMES, accuracy, strict=True)], fontsize=8
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (per-class accuracy)")
    ax.set_title(title or "confusion matrix")
    return save_figure(fig, path)


def per_class_table(matrix: np.ndarray) -> str:
    """Markdown table: test images, correct answers and accuracy per class."""
    accuracy = per_class_accuracy(matrix)
    lines = ["| class | test images | correct | accuracy |", "|---|---:|---:|---:|"]
    for i, name in enumerate(CLASS_NAMES):
        lines.append(f"| {name} | {matrix[i].sum()} | {matrix[i, i]} | {accuracy[i]:.2%} |")
    return "\n".join(lines)
