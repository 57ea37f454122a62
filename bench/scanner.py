"""Scanner-conditions benchmark (`python -m bench scanner`): how the service sorts photos a warehouse
scanner takes, not catalog photos.

Each test image becomes a camera-size JPEG (1280x960, quality 60-95) of that garment lying on a
belt, under one condition: the background, the light, the pose, what else is in frame, the
garment's own colour, blur. The garment keeps its dataset silhouette and texture: its photo
lightness is the dataset image negated (the dataset was made by negating such photos), its shape
is where the dataset image is not black. Nothing here knows how the service segments or trims.

Every photo goes through the service's own preprocessing, model and sorting policy (in process,
no HTTP: the figures are about what is decided, not how fast). Per condition: top-1, season
accuracy, review share and wrong bin without review (the costliest failure). Empty belts have no
garment: every one of them should go to review. A run on validation images (``--split validation``,
with a model that held them out) chooses review thresholds that keep the wrong bin under targets in
every condition, and the test run reports what they cost (bench/operating.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import io
import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageFilter

from bench import operating
from bench.garment import EMPTY, LIGHT, Garment, garment
from bench.photos import load_test_set
from bench.server import REPO
from contract.classes import CLASS_NAMES, NUM_CLASSES
from contract.seasons import default_season_of_class

if TYPE_CHECKING:
    from app.config import Settings
    from app.inference.preprocess import ModelInput

FRAME = (1280, 960)  # width, height: 1.2 MP, the smallest camera size the issue asks for
Canvas = np.ndarray  # float32 (height, width, 3), 0..255
Render = Callable[[np.ndarray, np.random.Generator], Image.Image]


def tint(lightness: np.ndarray, rng: np.random.Generator, saturation: float = 0.5) -> np.ndarray:
    """An RGB garment of the given luma: chroma along a zero-luma direction, none at black or white."""
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    direction = rng.uniform(-1.0, 1.0, 3).astype(np.float32)
    direction -= (direction @ luma) / luma.sum()
    direction /= max(1e-6, float(np.abs(direction).max()))
    headroom = np.minimum(lightness, 255.0 - lightness)
    amplitude = np.minimum(saturation * 127.0 * np.sin(np.pi * lightness / 255.0), headroom)
    rgb: np.ndarray = lightness[..., None] + amplitude[..., None] * direction
    return rgb


def place(canvas: Canvas, item: Garment, rgb: np.ndarray, top: int, left: int) -> None:
    """Lay the garment on the canvas (alpha over), clipped to the frame."""
    h, w = item.alpha.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    a = item.alpha[y0 - top : y1 - top, x0 - left : x1 - left, None]
    region = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = a * rgb[y0 - top : y1 - top, x0 - left : x1 - left] + (1.0 - a) * region


# --- backgrounds and light ----------------------------------------------------------------------
def plain(level: float, rng: np.random.Generator, tint_amount: float = 4.0) -> Canvas:
    colour = level + rng.uniform(-tint_amount, tint_amount, 3)
    return np.broadcast_to(colour.astype(np.float32), (FRAME[1], FRAME[0], 3)).copy()


def textured_belt(rng: np.random.Generator) -> Canvas:
    """A dark rubber belt: fine ribs across it and a mottled surface."""
    canvas = plain(float(rng.uniform(30, 60)), rng)
    ribs = 6.0 * np.sin(np.arange(FRAME[1], dtype=np.float32) * 2 * np.pi / rng.uniform(6, 14))
    mottle = Image.fromarray(rng.integers(0, 255, (FRAME[1] // 16, FRAME[0] // 16), dtype=np.uint8), "L")
    mottle_px = np.asarray(mottle.resize(FRAME, Image.Resampling.BICUBIC), np.float32) / 255.0 - 0.5
    canvas += (ribs[:, None] + 14.0 * mottle_px)[..., None]
    return canvas


def lamp(rng: np.random.Generator, low: float) -> np.ndarray:
    """A light field: a lamp to one side, falling off to ``low`` of full light across the frame."""
    yy, xx = np.mgrid[0 : FRAME[1], 0 : FRAME[0]].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    position = (np.cos(angle) * (xx / FRAME[0] - 0.5) + np.sin(angle) * (yy / FRAME[1] - 0.5)) + 0.5
    field: np.ndarray = (low + (1.0 - low) * np.clip(position, 0.0, 1.0)).astype(np.float32)
    return field


def barcode_label(canvas: Canvas, rng: np.random.Generator, avoid: tuple[int, int, int, int]) -> None:
    """A white shipping label with a barcode, somewhere the garment is not."""
    width, height = int(rng.integers(180, 300)), int(rng.integers(90, 160))
    top, left, bottom, right = avoid
    for _ in range(50):
        y, x = int(rng.integers(0, FRAME[1] - height)), int(rng.integers(0, FRAME[0] - width))
        if x + width < left or x > right or y + height < top or y > bottom:
            break
    canvas[y : y + height, x : x + width] = 248.0
    bar_x = x + 12
    while bar_x < x + width - 12:
        bar = int(rng.integers(2, 7))
        canvas[y + 12 : y + height - 30, bar_x : bar_x + bar] = 20.0
        bar_x += bar + int(rng.integers(2, 6))


# --- the conditions -----------------------------------------------------------------------------
def _scene(
    image: np.ndarray,
    rng: np.random.Generator,
    background: Canvas,
    *,
    size_fraction: tuple[float, float] = (0.55, 0.75),
    angle_deg: float = 0.0,
    centred: bool = True,
    light: np.ndarray | None = None,
    brightness: Callable[[np.ndarray], np.ndarray] | None = None,
    label: bool = False,
) -> Canvas:
    size = int(rng.uniform(*size_fraction) * FRAME[1])
    item = garment(image, size, angle_deg)
    lightness = item.lightness if brightness is None else brightness(item.lightness)
    rgb = tint(lightness, rng, float(rng.uniform(0.2, 0.7)))
    h, w = item.alpha.shape
    if centred:
        top = (FRAME[1] - h) // 2 + int(rng.integers(-40, 41))
        left = (FRAME[0] - w) // 2 + int(rng.integers(-60, 61))
    else:
        top, left = int(rng.integers(0, max(1, FRAME[1] - h))), int(rng.integers(0, max(1, FRAME[0] - w)))
    place(background, item, rgb, top, left)
    if label:
        barcode_label(background, rng, (top, left, top + h, left + w))
    if light is not None:
        background *= light[..., None]
    return background


def light_background(image: np.ndarray, rng: np.random.Generator) -> Canvas:
    return _scene(image, rng, plain(LIGHT, rng, 1.0))


def mid_grey(image: np.ndarray, rng: np.random.Generator) -> Canvas:
    return _scene(image, rng, plain(float(rng.uniform(110, 150)), rng))


def dark_belt(image: np.ndarray, rng: np.random.Generator) -> Canvas:
    return _scene(image, rng, plain(float(rng.uniform(25, 55)), rng))


def textured_belt_lamp(image: np.ndarray, rng: np.random.Generator) -> Canvas:
    return _scene(image, rng, textured_belt(rng), light=lamp(rng, float(rng.uniform(0.45, 0.7))))


def light_with_shadow(image: np.ndarray, rng: np.random.Generator) -> Canvas:
    return _scene(image, rng, plain(LIGHT, rng, 1.0), light=lamp(rng, float(rng.uniform(0.4, 0.6))))


def rotated(image: np.ndarray, rng: np.random.Generator) -> Canvas:
    angle = float(rng.uniform(10, 30)) * (1 if rng.random() < 0.5 else -1)
    return _scene(image, rng, plain(LIGHT, rng, 1.0), angle_deg=angle)


def label_in_frame(image: np.ndarray, rng: np.random.Generator) -> Canvas:
    return _scene(image, rng, plain(LIGHT, rng, 1.0), size_fraction=(0.45, 0.6), label=True)


def recoloured(image: np.ndarray, rng: np.random.Generator) -> Canvas:
    """The same silhouette and texture, the garment lighter or darker as a whole (gamma)."""
    gamma = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))

    def brightness(lightness: np.ndarray) -> np.ndarray:
        return LIGHT * (lightness / LIGHT) ** gamma

    return _scene(image, rng, plain(LIGHT, rng, 1.0), brightness=brightness)


def off_centre(image: np.ndarray, rng: np.random.Generator) -> Canvas:
    return _scene(image, rng, plain(LIGHT, rng, 1.0), size_fraction=(0.3, 0.8), centred=False)


def blurred(image: np.ndarray, rng: np.random.Generator) -> Canvas:
    """Defocus (a Gaussian) or motion along the belt (a horizontal box of 9-25 px)."""
    canvas = _scene(image, rng, plain(LIGHT, rng, 1.0))
    if rng.random() < 0.5:
        photo = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
        return np.asarray(photo.filter(ImageFilter.GaussianBlur(float(rng.uniform(3, 8)))), np.float32)
    length = int(rng.integers(9, 26))
    padded = np.pad(canvas, ((0, 0), (length, length), (0, 0)), mode="edge")
    running = np.cumsum(padded, axis=1, dtype=np.float64)
    start = length - length // 2
    end = start + length - 1  # the window of column x is padded columns [x + start, x + end], inclusive
    window = running[:, end : end + FRAME[0]] - running[:, start - 1 : start - 1 + FRAME[0]]
    return (window / length).astype(np.float32)


def empty_belt(image: np.ndarray, rng: np.random.Generator) -> Canvas:
    """No garment: a belt of any of the backgrounds above, sometimes with a label on it."""
    kind = int(rng.integers(0, 4))
    canvas = [plain(LIGHT, rng, 1.0), plain(float(rng.uniform(110, 150)), rng), plain(40.0, rng), textured_belt(rng)][
        kind
    ]
    if rng.random() < 0.3:
        barcode_label(canvas, rng, (0, 0, 0, 0))
    return canvas


CONDITIONS: dict[str, Callable[[np.ndarray, np.random.Generator], Canvas]] = {
    "light background (control)": light_background,
    "mid-grey background": mid_grey,
    "dark belt": dark_belt,
    "textured belt, lamp gradient": textured_belt_lamp,
    "light background, strong shadow": light_with_shadow,
    "rotated 10-30 degrees": rotated,
    "label in frame": label_in_frame,
    "garment lighter or darker": recoloured,
    "off-centre, 30-80 % of the frame": off_centre,
    "motion or defocus blur": blurred,
    "empty belt": empty_belt,
}


def photo_jpeg(canvas: Canvas, rng: np.random.Generator) -> bytes:
    """The canvas as a camera JPEG: sensor noise, quality 60-95."""
    noisy = canvas + rng.normal(0.0, 1.5, canvas.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB").save(
        buffer, "JPEG", quality=int(rng.integers(60, 96))
    )
    return buffer.getvalue()


def render(condition: str, image: np.ndarray, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return photo_jpeg(CONDITIONS[condition](image, rng), rng)


# --- the measurement ----------------------------------------------------------------------------
def stratified(labels: np.ndarray, per_class: int, seed: int = 2026) -> np.ndarray:
    """``per_class`` test images of each class, chosen by a fixed seed (test images: never trained on)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(NUM_CLASSES)]
    return np.sort(np.concatenate(chosen))


@functools.cache
def _worker_settings() -> Settings:
    from app.config import load_settings

    return load_settings()


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The images renders are made from: ``test`` to report, ``validation`` to tune on (the test
    split is never used to choose a threshold)."""
    if split == "test":
        return load_test_set()
    return _validation_set()


@functools.cache
def _validation_set() -> tuple[np.ndarray, np.ndarray]:
    from training import data

    held_out = data.split_train_validation(data.load_fashion_mnist(allow_download=False))
    return held_out.x_val, held_out.y_val


Renderer = Callable[[str, np.ndarray, int], bytes]


def renderer(name: str) -> tuple[Renderer, list[str]]:
    """``first`` (this module's scenes) or ``second`` (bench.second_renderer's): render, conditions."""
    if name == "first":
        return render, list(CONDITIONS)
    from bench import second_renderer

    return second_renderer.render, second_renderer.CONDITIONS


def _preprocess_rendered(job: tuple[str, str, str, int, int]) -> ModelInput | None:
    """Worker: render one photo and run the service's preprocessing on its bytes (None: refused)."""
    from app.errors import ApiError
    from app.inference import preprocess

    renderer_name, split, condition, index, seed = job
    images, _ = load_split(split)
    settings = _worker_settings()
    photo = renderer(renderer_name)[0](condition, images[index], seed)
    try:
        return preprocess.preprocess(photo, settings.max_image_pixels, settings.resize)
    except ApiError:  # refused outright: never sorted into a bin, so counted as sent to review
        return None


def run_scanner(args: argparse.Namespace, renderer_name: str = "first") -> dict[str, Any]:
    from app.config import load_settings
    from app.inference.tensorflow_model import load_tensorflow_model
    from app.policy import load_policy_for
    from app.reasons import Reason, before_policy

    settings = load_settings()
    model = load_tensorflow_model(settings.resolved_model_dir(), 256, settings.intra_op_threads, 1, settings.precision)
    policy = load_policy_for(settings, model.class_names, model.review_threshold)
    metadata = model.metadata.model_dump()  # as the loader validated it, extra fields included
    split = getattr(args, "split", "test")
    if split != "test":
        operating.check_held_out(metadata)
    images, labels = load_split(split)
    chosen = stratified(labels, args.per_class)
    season_of = default_season_of_class()
    true_season = np.array([season_of[CLASS_NAMES[label]] for label in labels[chosen]])
    on = dt.date(2026, 11, 30)
    results: dict[str, Any] = {
        "model": f"{model.name} v{model.version} ({model.precision})",
        "per_class": args.per_class,
        "split": split,
        "renderer": renderer_name,
    }
    first = renderer_name == "first"
    table = {}
    outcomes: dict[str, operating.Outcomes] = {}  # garment conditions: the review threshold's effect
    with ProcessPoolExecutor(args.workers) as pool:
        for number, condition in enumerate(renderer(renderer_name)[1]):
            jobs = [(renderer_name, split, condition, int(i), 1000 * number + int(i)) for i in chosen]
            prepared = list(pool.map(_preprocess_rendered, jobs, chunksize=16))
            refused = np.array([item is None for item in prepared])
            seen = np.stack([np.zeros((28, 28), np.uint8) if item is None else item.pixels for item in prepared])
            inferred = [model.infer(seen[s : s + 256]) for s in range(0, len(seen), 256)]
            probabilities = np.concatenate([i.probabilities for i in inferred])
            unfamiliar = np.concatenate([i.unfamiliar for i in inferred])
            decisions = [
                policy.decide(row, on, before_policy(() if item is None else item.reasons, bool(odd)))
                for row, item, odd in zip(probabilities, prepared, unfamiliar, strict=True)
            ]
            review = np.array([d.needs_review for d in decisions]) | refused
            reasons = Counter(str(r) for d in decisions for r in d.reasons)
            season_ok = np.array([d.season for d in decisions]) == true_season
            if condition != EMPTY:
                outcomes[condition] = operating.Outcomes(
                    mass=np.array([d.season_mass for d in decisions]),
                    season_ok=season_ok,
                    held=refused | np.array([any(r != Reason.LOW_CONFIDENCE for r in d.reasons) for d in decisions]),
                )
            top1 = probabilities.argmax(axis=1) == labels[chosen]
            # Whether a reason earns its keep: how often the model was right on what it sent away.
            top1_when_flagged = {
                reason: float(np.mean([ok for ok, d in zip(top1, decisions, strict=True) if reason in d.reasons]))
                for reason in sorted(reasons)
            }
            table[condition] = {
                "top1": float(top1.mean()),
                "season_accuracy": float(season_ok.mean()),
                "review_share": float(review.mean()),
                "wrong_bin_share": float((~season_ok & ~review).mean()),
                "refused": int(refused.sum()),
                "images": len(chosen),
                "reasons": dict(sorted(reasons.items())),
                "top1_when_flagged": top1_when_flagged,
            }
            print(
                f"{condition:36s} "
                + "  ".join(f"{k} {v:.3f}" for k, v in table[condition].items() if isinstance(v, float))
                + f"  {dict(reasons)}  top-1 when flagged "
                + str({k: round(v, 2) for k, v in top1_when_flagged.items()}),
                flush=True,
            )
            if split == "test" and first:  # validation runs are for tuning: no samples, no report
                _save_sample(
                    SAMPLES_DIR, number, condition, images[chosen[number]], seed=1000 * number + int(chosen[number])
                )
    results["conditions"] = table
    if first:  # the thresholds are chosen on, and reported for, this module's scenes
        _operating_points(results, outcomes, metadata, policy.review_threshold)
    return results


def _operating_points(
    results: dict[str, Any], outcomes: dict[str, operating.Outcomes], metadata: dict[str, Any], shipped: float
) -> None:
    """A test run reports the thresholds a validation run chose (bench/operating.py); a validation
    run chooses them, and that file is all it writes."""
    if results["split"] == "test":
        thresholds = operating.read_chosen(THRESHOLDS_JSON, results["model"], metadata)
        if thresholds is not None:
            results["operating_points"] = operating.report(outcomes, thresholds, shipped)
            results["operating_chosen_on"] = thresholds["chosen_on"]
        return
    thresholds = operating.choose(outcomes, results["model"], metadata, results["per_class"])
    THRESHOLDS_JSON.write_text(json.dumps(thresholds, indent=2) + "\n")
    for point in operating.report(outcomes, thresholds, shipped):
        worst_wrong = max(row["wrong_bin_share"] for row in point["conditions"].values())
        worst_review = max(row["review_share"] for row in point["conditions"].values())
        print(
            f"threshold {point['threshold']:.4f} (target {point['target']}): worst wrong bin {worst_wrong:.4f},"
            f" worst review {worst_review:.3f}",
            flush=True,
        )


def _save_sample(out_dir: Path, number: int, condition: str, image: np.ndarray, seed: int) -> None:
    from app.inference import preprocess

    out_dir.mkdir(parents=True, exist_ok=True)
    data = render(condition, image, seed)
    seen = preprocess.preprocess(data, 40_000_000).pixels
    photo = Image.open(io.BytesIO(data)).convert("RGB").resize((320, 240), Image.Resampling.LANCZOS)
    tile = Image.new("RGB", (320 + 8 + 168, 240), (255, 255, 255))
    tile.paste(photo, (0, 0))
    tile.paste(Image.fromarray(seen, "L").resize((168, 168), Image.Resampling.NEAREST).convert("RGB"), (328, 36))
    tile.save(out_dir / f"{number:02d}.png")


def scanner_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| condition | top-1 | season accuracy | sent to review | wrong bin, not sent to review |",
        "|---|---:|---:|---:|---:|",
    ]
    for condition, row in results["conditions"].items():
        top1 = "n/a" if condition == EMPTY else f"{100 * row['top1']:.1f} %"
        season = "n/a" if condition == EMPTY else f"{100 * row['season_accuracy']:.1f} %"
        wrong = "n/a" if condition == EMPTY else f"{100 * row['wrong_bin_share']:.1f} %"
        review = f"{100 * row['review_share']:.1f} %"
        if condition == EMPTY:  # every one should go: the count shows the one that did not
            reviewed = round(row["review_share"] * row["images"])
            review = f"{100 * row['review_share']:.2f} % ({reviewed:,} of {row['images']:,})"
        lines.append(f"| {condition} | {top1} | {season} | {review} | {wrong} |")
    return lines


def reasons_table(results: dict[str, Any]) -> list[str]:
    from app.reasons import Reason

    codes = [str(reason) for reason in Reason]
    lines = ["| condition | " + " | ".join(f"`{code}`" for code in codes) + " |", "|---|" + "---:|" * len(codes)]
    for condition, row in results["conditions"].items():
        shares = [100 * row["reasons"].get(code, 0) / row["images"] for code in codes]
        lines.append(f"| {condition} | " + " | ".join(f"{share:.2f} %" for share in shares) + " |")
    return lines


def write_report(results: dict[str, Any], samples: list[str], path: Path) -> None:
    """docs/scanner.md: what was rendered, the table, and one sample per condition."""
    lines = [
        "# Scanner conditions",
        "",
        (
            "Written by `python -m bench scanner` (bench/scanner.py). Test images, stratified"
            f" ({results['per_class']} per class, never trained on), rendered as 1280x960 camera JPEGs"
            " (quality 60-95) of the garment on a belt under each condition; every photo goes through the"
            " service's own preprocessing, model and sorting policy. The garment keeps its dataset"
            " silhouette and texture; its outline pixels, which in the dataset are part garment and part"
            " the white background of the original photo, are unmixed (`unmix_edge`), so that a garment"
            " on a dark belt has no white rim. Nothing in the renderer knows how the service trims or"
            f" segments. Model: {results['model']}. How the garment is found:"
            " [architecture.md](architecture.md#preprocess); before and after:"
            " [performance.md](performance.md#scanner-photos)."
        ),
        "",
        *scanner_table(results),
        "",
        "Empty belts hold no garment: the only right answer is review.",
        "",
        (
            "These photos come from one renderer. A second one, written apart from it (`python -m bench"
            " scanner-second`), finds the service weaker: [performance.md](performance.md#a-second-renderer)."
        ),
        "",
        "Why photos went to review (share of each condition's photos; one photo can have several reasons):",
        "",
        *reasons_table(results),
        "",
        *(
            [*operating.table(results["operating_points"], results["operating_chosen_on"]), ""]
            if "operating_points" in results
            else []
        ),
        "## Samples",
        "",
        "Each sample: the photo, and the 28x28 image the model saw.",
        "",
        *[f"![{condition}]({sample})" for condition, sample in zip(results["conditions"], samples, strict=True)],
        "",
    ]
    path.write_text("\n".join(lines))


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")


def bench_scanner(args: argparse.Namespace) -> dict[str, Any]:
    """The `scanner` part: measure, then write docs/scanner.md, its samples and the figures as JSON."""
    results = run_scanner(args)
    if results["split"] != "test":
        return results
    write_json(results, SCANNER_JSON)
    samples = [f"bench/scanner/{number:02d}.png" for number in range(len(CONDITIONS))]
    write_report(results, samples, SCANNER_DOC)
    return results


def bench_scanner_second(args: argparse.Namespace) -> dict[str, Any]:
    """The `scanner-second` part: the same measurement on bench.second_renderer's photos; prints the
    table and writes the figures to docs/bench/scanner-second.json (a test run)."""
    results = run_scanner(args, "second")
    print("\n".join(scanner_table(results)), flush=True)
    if results["split"] == "test":
        write_json(results, SCANNER_SECOND_JSON)
    return results


SCANNER_DOC = REPO / "docs" / "scanner.md"
SCANNER_SECOND_JSON = REPO / "docs" / "bench" / "scanner-second.json"
SCANNER_JSON = REPO / "docs" / "bench" / "scanner.json"
THRESHOLDS_JSON = REPO / "docs" / "bench" / "scanner-thresholds.json"  # chosen on validation renders
SAMPLES_DIR = REPO / "docs" / "bench" / "scanner"
