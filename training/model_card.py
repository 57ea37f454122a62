"""models/fashion-cnn/README.md: what a user of the shipped model needs to know, from measured files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.classes import CLASS_NAMES
from contract.metadata import METADATA_FILE
from contract.seasons import default_season_of_class
from contract.signature import native_bfloat16
from training import architectures, benchmark, data, export, report

Member = dict[str, Any]  # one network's entry in metadata.json's ensemble_members


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _layer_table(arch: str) -> str:
    model = architectures.build(arch)
    lines = ["| layer | output shape | params |", "|---|---|---:|"]
    for layer in model.layers:
        lines.append(f"| {layer.__class__.__name__} | {tuple(layer.output.shape[1:])} | {layer.count_params():,} |")
    return "\n".join(lines)


def _speed_table(
    images_per_s: dict[str, dict[int, float]],
    accuracy: dict[str, float],
    sorting: dict[str, dict[str, Any]],
    threshold_label: str = "own, on validation",
) -> str:
    precisions = list(images_per_s)
    lines = benchmark.table_lines(images_per_s)
    lines.append("| test accuracy | " + " | ".join(_pct(accuracy[p]) for p in precisions) + " |")
    if all(p in sorting for p in precisions):
        lines.append(
            f"| review threshold ({threshold_label}) | "
            + " | ".join(f"{sorting[p]['review_threshold']:.4f}" for p in precisions)
            + " |"
        )
        lines.append(
            "| test wrong-bin / review share | "
            + " | ".join(
                f"{_pct(sorting[p]['test']['wrong_bin_rate'])} / {_pct(sorting[p]['test']['review_share'])}"
                for p in precisions
            )
            + " |"
        )
    return "\n".join(lines)


def _recipe_text(members: Sequence[Member]) -> str:
    """One paragraph per trained network (an ensemble has several)."""
    paragraphs = []
    for index, member in enumerate(members, 1):
        t = member["training"]
        zoom = f", random rescale by up to {100 * t['zoom']:g} %" if t.get("zoom") else ""
        if t.get("scanner"):
            zoom += ", rotations, shifts, lighter and darker garments and soft edges (scanner photos)"
        alone = (
            "trained on all 60,000"
            if member["validation_accuracy"] is None
            else f"validation {_pct(member['validation_accuracy'])} alone"
        )
        role = "unsure images only, " if member.get("unsure_only") else ""
        head = f"Member {index} (`{member['run']}`, {role}{alone}): " if len(members) > 1 else ""
        checkpoint = "training" if t.get("full_train") else "validation"
        paragraphs.append(
            f"{head}{t['epochs']} epochs (best {checkpoint} loss at epoch {t['best_epoch']}), "
            f"batch {t['batch_size']},\n"
            f"{t['optimizer']} (learning rate {t['learning_rate']:g}, weight decay {t['weight_decay']:g}),\n"
            f"{t['lr_schedule']} schedule with {t['warmup_epochs']} warm-up epochs, label smoothing\n"
            f"{t['label_smoothing']:g}, augmentation {'on' if t['augment'] else 'off'} (2-pixel pad + random\n"
            f"crop, horizontal flip, random erasing{zoom}), seed {t['seed']}. "
            f"Wall time: {t['wall_time_s'] / 60:.0f} minutes on 2 CPU cores."
        )
    return "\n\n".join(paragraphs)


def _train_and_calibrate_commands(members: Sequence[Member], calibrate_options: str) -> list[str]:
    lines = []
    for member in members:
        t = member["training"]
        zoom = f" --zoom {t['zoom']:g}" if t.get("zoom") else ""
        zoom += " --scanner" if t.get("scanner") else ""
        full = " --full-train" if t.get("full_train") else ""
        lines.append(
            f".venv/bin/garment-sorter train --arch fashion-cnn --epochs {t['epochs']} "
            f"--batch-size {t['batch_size']} --augment{zoom} \\\n"
            f"    --optimizer {t['optimizer']} --learning-rate {t['learning_rate']:g} "
            f"--weight-decay {t['weight_decay']:g} \\\n"
            f"    --label-smoothing {t['label_smoothing']:g} --lr-schedule {t['lr_schedule']} "
            f"--warmup-epochs {t['warmup_epochs']} \\\n"
            f"    --patience {t['patience']} --seed {t['seed']}{full} --out {member['run']}"
        )
    others = " ".join(m["run"] for m in members[1:] if not m.get("unsure_only"))
    unsure = " ".join(m["run"] for m in members if m.get("unsure_only"))
    lines.append(
        f".venv/bin/garment-sorter calibrate --run {members[0]['run']}{calibrate_options}"
        + (f" --ensemble-with {others}" if others else "")
        + (f" --unsure-with {unsure}" if unsure else "")
    )
    return lines


def _reproduce_text(
    members: Sequence[Member],
    figures_dir: Path | str,
    tta: bool,
    twin_runs: Sequence[str] = (),
    flip_below: float | None = None,
) -> str:
    flip = " --tta-flip" if tta else (f" --flip-below {flip_below:g}" if flip_below is not None else "")
    lines = []
    if twin_runs:  # the same recipes without the validation split, calibrated there first
        twin = [
            {**m, "run": run, "training": {**m["training"], "full_train": False}}
            for run, m in zip(twin_runs, members, strict=True)
        ]
        lines += _train_and_calibrate_commands(twin, flip)
        lines.append(
            f".venv/bin/garment-sorter export --run {twin_runs[0]}"
            "  # the twin ships too: its validation figures back the threshold"
        )
        lines += _train_and_calibrate_commands(members, f" --out {figures_dir}{flip} --held-out-twin {twin_runs[0]}")
    else:
        lines += _train_and_calibrate_commands(members, f" --out {figures_dir}{flip}")
    first = members[0]["run"]
    lines += [
        f".venv/bin/garment-sorter export --run {first}",
        # a run trained on validation has no validation figure for the comparison's training-run rows
        f".venv/bin/garment-sorter model-card{'' if twin_runs else f' --run {first}'} --figures {figures_dir}",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Card:
    """What the card is written from: the version's metadata and what write_card measured."""

    meta: dict[str, Any]
    figures_dir: Path
    images_per_s: dict[str, dict[int, float]]  # precision -> {batch size: images/s} on this machine
    test_accuracy: float  # the float32 signature's
    accuracy_by_precision: dict[str, float]  # test accuracy of each timed precision
    matrix: np.ndarray  # the float32 signature's test confusion matrix

    @property
    def twin(self) -> dict[str, Any] | None:
        """A model trained on all 60,000 images was calibrated by its held-out twin (same recipes,
        50,000 only): the validation figures are the twin's."""
        twin: dict[str, Any] | None = self.meta.get("calibrated_by")
        return twin

    @property
    def held_out(self) -> dict[str, Any]:
        return self.twin or self.meta

    @property
    def validation_label(self) -> str:
        return "validation (held-out twin)" if self.twin else "validation"

    @property
    def members(self) -> list[Member]:
        members: list[Member] = self.meta.get("ensemble_members", [])
        return members

    @property
    def unsure(self) -> int:
        return sum(1 for m in self.members if m.get("unsure_only"))

    @property
    def figures_link(self) -> Path:
        return Path("../..") / self.figures_dir  # the card lives in models/fashion-cnn/


def _measure(
    version_dir: Path, figures_dir: Path, images_per_s: dict[str, dict[int, float]], meta: dict[str, Any]
) -> Card:
    """The exported model on the test set, and the confusion matrix and prediction grid it draws."""
    dataset = data.load_fashion_mnist()
    accuracy_by_precision = {
        precision: float(
            np.mean(
                export.predict_exported(version_dir, dataset.x_test, precision)["probabilities"].argmax(1)
                == dataset.y_test
            )
        )
        for precision in images_per_s
    }
    probs = export.predict_exported(version_dir, dataset.x_test)["probabilities"]
    predicted = probs.argmax(axis=1)
    matrix = report.confusion_matrix(dataset.y_test, predicted)
    figures_dir.mkdir(parents=True, exist_ok=True)
    report.confusion_matrix_plot(
        matrix, figures_dir / "confusion_matrix.png", title=f"fashion-cnn v{meta['version']}: test"
    )
    report.prediction_grid(dataset.x_test, dataset.y_test, predicted, figures_dir / "prediction_grid.png")
    return Card(
        meta=meta,
        figures_dir=figures_dir,
        images_per_s=images_per_s,
        test_accuracy=float(np.mean(predicted == dataset.y_test)),
        accuracy_by_precision=accuracy_by_precision,
        matrix=matrix,
    )


def _serving_text(card: Card) -> str:
    """How the graph serves: flip averaging (always or for unsure images) and the ensemble."""
    meta, members, unsure = card.meta, card.members, card.unsure
    tta, flip_below = bool(meta.get("tta_flip")), meta.get("flip_below")
    text = (
        "\nServed with flip averaging: the logits of the image and of its mirror image are averaged inside\n"
        "the graph (garments are left-right symmetric), so every figure below includes it, at twice the\n"
        "compute of one pass."
        if tta
        else ""
    )
    if flip_below is not None:
        worst = 2 * len(members) / (len(members) - unsure) if members else 2
        text = (
            "\nServed with flip averaging for unsure images: where the top-class probability (before temperature\n"
            f"scaling) is below {flip_below:g}, the graph averages in the logits of the mirror image (garments are\n"
            "left-right symmetric). Every figure below includes it; it\n"
            + ("and the unsure-only members below cost more passes" if unsure else "costs a second pass")
            + f" for those images only, {'twice' if worst == 2 else f'{worst:g} times'} the compute at worst\n"
            "(a batch of nothing but unsure images)."
        )
    if members:
        averaged = len(members) - unsure
        late = f"member {len(members)} joins" if unsure == 1 else f"members {averaged + 1}-{len(members)} join"
        text += (
            f"\nServed as an ensemble of {len(members)} independently trained networks of this architecture\n"
            f"({meta['params'] // len(members):,} parameters each, {meta['params']:,} in all): the graph averages\n"
            + (
                f"the logits of the first {averaged} for every image; {late} that average (both views)\n"
                f"only where the first {averaged} are unsure (p < {flip_below:g}, as for the mirror view): "
                "a second look\n"
                "where answers change, at little cost since few images are unsure. "
                "Every figure below is the ensemble's."
                if unsure
                else "their logits, so every figure below is the ensemble's."
            )
        )
    return text


def _accuracy_text(card: Card) -> str:
    meta, twin = card.meta, card.twin
    if twin:
        return (
            f"trained on validation too; its held-out twin `{', '.join(twin['runs'])}` scored "
            f"{_pct(twin['validation_accuracy'])} on validation and {_pct(twin['test_accuracy'])} on test"
        )
    # run.json measured the train split through one network and one view: only then is it the served figure
    one_view = not (card.members or meta.get("tta_flip") or meta.get("flip_below") is not None)
    train_text = f"; train split {_pct(meta['train_accuracy'])}" if one_view else ""
    return f"validation {_pct(meta['validation_accuracy'])}{train_text}"


def _split_text(card: Card) -> str:
    if card.twin:
        return (
            "Trained on all 60,000 training images (train + validation) with the recipe chosen on validation.\n"
            f"Its held-out twin (`{', '.join(card.twin['runs'])}`: the same recipes and seeds trained on the 50,000\n"
            "only) chose the temperature and the review threshold on the clean validation split; this model\n"
            "serves both unchanged, and the test split checks that they carry over."
        )
    return (
        "Trained on the 50,000-image train split only (not retrained on all 60,000: the validation split stays\n"
        "clean for calibration and the review threshold)."
    )


def _intro(card: Card) -> str:
    version = card.meta["version"]
    return f"""# fashion-cnn (version {version})

The production garment classifier the service loads (`models/fashion-cnn/{version}/`, TensorFlow
SavedModel, signature `serving_default`: `images` uint8 [None, 28, 28, 1], garment bright on black ->
`probabilities` (temperature-scaled) and `logits`, float32 [None, 10]). Every figure below was measured
from the exported SavedModel or the training run, by the commands at the end.

"""


def _data_section(card: Card) -> str:
    return f"""## Data
Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70,000 28x28 grayscale product images in ten balanced
classes, read from the four original IDX files (`{card.meta.get("dataset_source", "")}`, sha256 in
`metadata.json`). The 60,000 training images are split, seeded and stratified, into 50,000 train and
10,000 validation; every choice (architecture, epoch, temperature, review threshold) was made on
validation. The 10,000 test images were used for these reports only.

"""


def _architecture_section(card: Card) -> str:
    widths = ", ".join(str(w) for w in architectures.FASHION_CNN_WIDTHS)
    return f"""## Architecture: {card.meta["params"]:,} parameters
VGG-style: three blocks of two 3x3 conv (no bias) -> BatchNorm -> ReLU at {widths} channels,
2x2 max-pool between blocks, global average pooling, Dropout 0.3, Dense(10). The exported graph scales
uint8 by 1/255 inside the graph and folds each BatchNorm into its convolution.{_serving_text(card)}

{_layer_table(card.meta["architecture"])}

"""


def _training_section(card: Card) -> str:
    meta = card.meta
    members = card.members or [{"training": meta["training"], "validation_accuracy": meta["validation_accuracy"]}]
    return f"""## Training recipe
{_recipe_text(members)}

{_split_text(card)}

"""


def _warehouse_text(card: Card) -> str:
    """The warehouse's own photos, when the model trained with some (--extra-data)."""
    warehouse = card.meta.get("warehouse")
    if not warehouse:
        return ""
    images = warehouse["images"]
    accuracy = warehouse.get("held_out_accuracy")
    measured = "not measured (an empty slice)" if accuracy is None else f"**{_pct(accuracy)}**"
    return (
        f"\nOn the warehouse's own reviewed photos held out from training ({images['held_out']} photos; "
        f"{images['trained_on']} more were trained on): {measured}.\n"
    )


def _accuracy_section(card: Card) -> str:
    link = card.figures_link
    return f"""## Accuracy
Test accuracy: **{_pct(card.test_accuracy)}** ({_accuracy_text(card)}).
The study's best model scored 90.47 %.
{_warehouse_text(card)}
{report.per_class_table(card.matrix)}

![confusion matrix]({link / "confusion_matrix.png"})

![predictions]({link / "prediction_grid.png"})

"""


def _calibration_section(card: Card) -> str:
    meta, held_out = card.meta, card.held_out
    fitted = "Temperature fitted on validation" + (" by the held-out twin" if card.twin else "")
    return f"""## Calibration
{fitted} by minimising NLL: **T = {meta["temperature"]:.4f}**, baked into
`probabilities`. Expected calibration error (15 equal-width bins):

| split | before | after |
|---|---:|---:|
| {card.validation_label} | {_pct(held_out["ece_validation_before"])} | {_pct(held_out["ece_validation_after"])} |
| test | {_pct(meta["ece_test_before"])} | {_pct(meta["ece_test_after"])} |

![reliability]({card.figures_link / "reliability.png"})

{_unfamiliar_text(card)}"""


def _unfamiliar_text(card: Card) -> str:
    block = card.meta.get("unfamiliar")
    if not block:
        return ""
    return f"""Unfamiliar inputs: the service adds the review reason `unfamiliar` where the energy score
(-logsumexp of the logits, `contract/unfamiliar.py`) is at or over **{block["threshold"]:.4f}**, the
threshold {_pct(block["trip_rate"])} of the clean images reach on the {block["calibrated_on"]}
({_pct(block["test_trip_rate"])} of the clean test images through this model, measured only).

"""


def _sorting_row(split: str, figures: dict[str, float]) -> str:
    return (
        f"| {split} | {_pct(figures['season_accuracy'])} | {_pct(figures['review_share'])} | "
        f"{_pct(figures['wrong_bin_rate'])} |"
    )


def _sorting_section(card: Card) -> str:
    seasons: dict[str, list[str]] = {}
    for name, season in default_season_of_class().items():
        seasons.setdefault(season, []).append(name)
    by_twin = ", chosen by the held-out twin" if card.twin else ""
    return f"""## Warehouse sorting
Seasons: summer = {", ".join(seasons["summer"])}; winter = {", ".join(seasons["winter"])};
all-season = {", ".join(seasons["all-season"])}. A bin's confidence is the sum of its classes'
probabilities; the item goes to the bin with the largest mass, or to manual review when that mass is
below **review_threshold = {card.meta["review_threshold"]:.4f}** (the smallest review share that keeps wrong-bin
items <= 1 % of all items on validation{by_twin}).

| split | season accuracy | review share | wrong-bin (of all items) |
|---|---:|---:|---:|
{_sorting_row(card.validation_label, card.held_out["sorting_validation"])}
{_sorting_row("test", card.meta["sorting_test"])}

![risk-coverage]({card.figures_link / "risk_coverage.png"})

"""


def _speed_section(card: Card) -> str:
    thresholds = (
        "both with the twin's float32 review threshold"
        if card.twin
        else "each with the review threshold chosen on validation for its own outputs"
    )
    table = _speed_table(
        card.images_per_s,
        card.accuracy_by_precision,
        card.meta.get("sorting_by_precision", {}),
        "the twin's, for both" if card.twin else "own, on validation",
    )
    return f"""## Speed
Inference through the exported signatures on {benchmark.machine()}; `serving_default` computes in
float32, `serving_bfloat16` in bfloat16 with the same weights (float32 logits layer). The service serves
bfloat16 where the CPU has AVX512-BF16 or AMX (as here) and float32 elsewhere (`SORTER_PRECISION`),
{thresholds}.

{table}

"""


def _targets_section(card: Card) -> str:
    meta, test_accuracy, sorting_test = card.meta, card.test_accuracy, card.meta["sorting_test"]
    # The target is judged on the fastest signature this machine runs natively (what the service serves).
    served = "bfloat16" if "bfloat16" in card.images_per_s and native_bfloat16() else "float32"
    served_per_s = card.images_per_s.get(served, {})
    return f"""## Against the targets
| target | measured | met |
|---|---:|:---:|
| test accuracy >= 95.0 % | {_pct(test_accuracy)} | {_yes(test_accuracy >= 0.95)} |
| parameters <= 1.5 M | {meta["params"]:,} | {_yes(meta["params"] <= 1_500_000)} |
| CPU images/s at batch 256 >= 5,000 ({served}) | {served_per_s.get(256, float("nan")):,.0f} | {
        _yes(served_per_s.get(256, 0) >= 5000)
    } |
| test ECE after calibration <= 1.5 % | {_pct(meta["ece_test_after"])} | {_yes(meta["ece_test_after"] <= 0.015)} |
| test wrong-bin <= 1.0 % | {_pct(sorting_test["wrong_bin_rate"])} | {_yes(sorting_test["wrong_bin_rate"] <= 0.01)} |
| test review share <= 5 % | {_pct(sorting_test["review_share"])} | {_yes(sorting_test["review_share"] <= 0.05)} |

"""


def _weaknesses_section(card: Card) -> str:
    accuracy = dict(zip(CLASS_NAMES, report.per_class_accuracy(card.matrix), strict=True))
    return f"""## Known weaknesses
- Shirt is the hardest class ({_pct(accuracy["Shirt"])}): it is confused with
  T-shirt/top, Pullover and Coat. Shirt vs T-shirt/top crosses seasons (all-season vs summer), so these
  items dominate manual review.
- Pullover vs Coat ({_pct(accuracy["Pullover"])} / {_pct(accuracy["Coat"])}) are confused with each
  other, but both are winter, so the season bin is usually right anyway.
- Trained on centred, catalogue-style 28x28 product shots. The service finds the garment on the belt
  (any colour, uneven light, tilted, a label beside it) and recreates the dataset's own pipeline from
  it, and sends to review what it cannot make safe (no garment, several items, cut off, low contrast,
  unfamiliar): [docs/scanner.md](../../docs/scanner.md). Worn garments and classes outside the ten
  remain out of distribution.

"""


INTENDED_USE = """## Intended use
Sorting single, isolated garments photographed lying on a belt at a warehouse inbound line into
season bins, with low-confidence items sent to manual review. Not for people, not for quality or
damage inspection, not for classes outside the ten.

"""


def _reproduce_section(card: Card) -> str:
    meta = card.meta
    commands = _reproduce_text(
        card.members or [{"run": meta.get("run", "runs/fashion-cnn"), "training": meta["training"]}],
        card.figures_dir,
        bool(meta.get("tta_flip")),
        card.twin["runs"] if card.twin else (),
        meta.get("flip_below"),
    )
    derived = meta.get("derived_from")
    if derived and meta.get("unfamiliar"):
        twin = " --held-out-twin models/fashion-cnn/<the held-out twin>" if card.twin else ""
        commands += (
            f"\n# version {meta['version']}: version {derived['version']}'s graph plus the unfamiliar threshold"
            f"\n.venv/bin/garment-sorter unfamiliar --version-dir models/fashion-cnn/{derived['version']}{twin}"
        )
    return f"""## Reproduce
```bash
{commands}
```
"""


def write_card(
    version_dir: Path, figures_dir: Path, card_path: Path, images_per_s: dict[str, dict[int, float]]
) -> Path:
    """Measure the exported model on the test set and write the card and its figures.

    ``images_per_s`` maps each exported precision to {batch size: images/s} on this machine."""
    version_dir, figures_dir, card_path = Path(version_dir), Path(figures_dir), Path(card_path)
    meta = json.loads((version_dir / METADATA_FILE).read_text())
    card = _measure(version_dir, figures_dir, images_per_s, meta)
    sections = (
        _intro,
        _data_section,
        _architecture_section,
        _training_section,
        _accuracy_section,
        _calibration_section,
        _sorting_section,
        _speed_section,
        _targets_section,
        _weaknesses_section,
    )
    card_path.write_text("".join(section(card) for section in sections) + INTENDED_USE + _reproduce_section(card))
    return card_path
