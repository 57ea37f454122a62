"""What stands out from the belt, as pieces and items.

Foreground is a distance from the belt above a threshold, with hysteresis: fainter pixels join
where they touch clear ones (the dark parts of a dark garment on a dark belt). Connected pieces,
specks dropped, only the largest kept (the grouping is quadratic in their number); labels and
stickers (small pieces that nearly fill their minimum-area rectangle) dropped before grouping, so
one lying next to the garment does not join it; pieces close together grouped into one item (a
sandal's straps), largest item first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from app.inference.segmentation.pose import min_area_rect, outline_points

MIN_DISTANCE = 5.0  # the smallest distance from the belt that is ever foreground (0-255 lightness)
HYSTERESIS_LOW = 0.5  # of the threshold: fainter pixels join where they touch foreground
SPECK_FRACTION = 0.0005  # of the frame: smaller pieces are noise
MAX_PIECES = 32  # the largest pieces considered; the rest are small beside them
GROUP_GAP_FRACTION = 0.04  # of the short edge: pieces closer than this are one item
LABEL_MIN_FRACTION = 0.002  # of the frame: a label is larger than this ...
LABEL_MAX_FRACTION = 0.05  # ... smaller than this ...
LABEL_MIN_FILL = 0.93  # ... and fills this much of its minimum-area rectangle
# A label's print stands out from the belt by this many times the foreground threshold. Its paper
# may not: white paper on a light belt (248 against 253) sits at the foreground floor, and comes out
# ragged. Where the piece as found is too ragged to be a rectangle, its clear part is judged too.
LABEL_CLEAR_FACTOR = 2.0
# ... when it is most of the piece: a label's print is (82-83 % of the two ragged labels measured);
# a thin garment's clear part is a few pixels of it (a sandal, a slim dress under a shadow: 1-2 %).
LABEL_CLEAR_SHARE = 0.5
CUT_OFF_FRACTION = 0.02  # of an edge's length touched by an item: cut off by the frame
EIGHT_NEIGHBOURS = np.ones((3, 3), bool)

Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)


@dataclass
class Item:
    mask: np.ndarray  # bool (h, w)
    area: int  # pixels


def faint(dist: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels that stand out from the belt at least faintly: above the hysteresis's low mark."""
    weak: np.ndarray = dist > max(MIN_DISTANCE, HYSTERESIS_LOW * threshold)
    return weak


def foreground(dist: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels above the threshold, and fainter ones (above half of it) connected to them: the dark
    parts of a dark garment on a dark belt belong to it when they touch what clearly does."""
    threshold = max(MIN_DISTANCE, threshold)
    weak = faint(dist, threshold)
    regions, count = ndimage.label(weak, structure=EIGHT_NEIGHBOURS)
    if count == 0:
        return weak
    seeded = np.zeros(count + 1, bool)
    seeded[regions[dist > threshold]] = True
    seeded[0] = False
    mask: np.ndarray = seeded[regions]
    return mask


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every background region that does not reach the frame's edge filled in."""
    outside, count = ndimage.label(~mask)
    if count == 0:
        return mask
    edge_labels = np.unique(np.concatenate([outside[0], outside[-1], outside[:, 0], outside[:, -1]]))
    filled: np.ndarray = ~np.isin(outside, edge_labels[edge_labels > 0])
    return filled


def box_of(mask: np.ndarray) -> Box | None:
    """The bounding box of a mask's true pixels; None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def largest_pieces(sizes: np.ndarray, frame: int) -> list[int]:
    """Labels of the pieces worth grouping: no specks, and only the MAX_PIECES largest, because the
    grouping is quadratic in their number and a photo of a checkerboard must cost no more than one
    of a shirt. ``sizes[label]`` is each piece's pixel count (``sizes[0]``: the background)."""
    order = np.argsort(-sizes[1:], kind="stable")[:MAX_PIECES] + 1
    return [int(i) for i in order if sizes[i] >= SPECK_FRACTION * frame]


def clear_part(dist: np.ndarray, threshold: float) -> np.ndarray:
    """What stands out from the belt as a label's print does: well above the threshold."""
    clear: np.ndarray = dist > LABEL_CLEAR_FACTOR * max(MIN_DISTANCE, threshold)
    return clear


def items(foreground: np.ndarray, clear: np.ndarray | None = None) -> list[Item]:
    """The items in a foreground mask, largest first. ``clear`` (``clear_part``) lets a label whose
    paper came out ragged be told by its print."""
    height, width = foreground.shape
    labels, count = ndimage.label(foreground, structure=EIGHT_NEIGHBOURS)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    slices = ndimage.find_objects(labels)
    frame = height * width
    pieces = largest_pieces(sizes, frame)
    # Labels go before grouping: one lying next to the garment must not join it.
    pieces = [i for i in pieces if not is_label_piece(labels, slices[i - 1], i, int(sizes[i]), frame, clear)]
    # Group pieces whose boxes are within the gap: union-find over a handful of pieces.
    gap = GROUP_GAP_FRACTION * min(height, width)
    parent = {i: i for i in pieces}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a_index, a in enumerate(pieces):
        sa = slices[a - 1]
        assert sa is not None
        for b in pieces[a_index + 1 :]:
            sb = slices[b - 1]
            assert sb is not None
            dy = max(sa[0].start - sb[0].stop, sb[0].start - sa[0].stop, 0)
            dx = max(sa[1].start - sb[1].stop, sb[1].start - sa[1].stop, 0)
            if dx <= gap and dy <= gap:
                parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for i in pieces:
        groups.setdefault(root(i), []).append(i)
    found = []
    for members in groups.values():
        mask = np.isin(labels, members)
        area = int(sizes[members].sum())
        found.append(Item(mask, area))
    found.sort(key=lambda item: item.area, reverse=True)
    return found


def is_label_piece(
    labels: np.ndarray,
    where: tuple[slice, ...] | None,
    index: int,
    area: int,
    frame: int,
    clear: np.ndarray | None = None,
) -> bool:
    """A label or sticker: small, and it, or its clear part when that is most of it, nearly fills
    its minimum-area rectangle (a garment never does)."""
    if where is None or not LABEL_MIN_FRACTION * frame <= area < LABEL_MAX_FRACTION * frame:
        return False
    piece = labels[where] == index
    if rectangle_fill(piece)[1] >= LABEL_MIN_FILL:
        return True
    if clear is None:
        return False
    # A thin garment's clear part, once opened, can be a speck that fills its rectangle too. Opening
    # only removes pixels, so a part already under the share is not measured.
    print_part = piece & clear[where]
    if np.count_nonzero(print_part) < LABEL_CLEAR_SHARE * area:
        return False
    pixels, fill = rectangle_fill(print_part)
    return fill >= LABEL_MIN_FILL and pixels >= LABEL_CLEAR_SHARE * area


def rectangle_fill(piece: np.ndarray) -> tuple[int, float]:
    """A piece's own shape: its pixels, and the share of its minimum-area rectangle they fill (0.0
    for a shape too small to tell)."""
    # Holes filled (a barcode's bars and the paper between them average out to the belt's grey at
    # working resolution), one-pixel fringes gone (belt texture touching its edge).
    shape = ndimage.binary_opening(fill_holes(np.pad(piece, 1)), structure=EIGHT_NEIGHBOURS)
    pixels = int(np.count_nonzero(shape))
    if pixels < 8:
        return pixels, 0.0
    rect_area, _, _ = min_area_rect(outline_points(shape))
    return pixels, pixels / rect_area


def touches_frame(mask: np.ndarray) -> bool:
    edges = (mask[0], mask[-1], mask[:, 0], mask[:, -1])
    return any(int(edge.sum()) >= max(2, CUT_OFF_FRACTION * len(edge)) for edge in edges)
