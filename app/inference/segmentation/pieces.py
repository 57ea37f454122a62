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


def items(foreground: np.ndarray) -> list[Item]:
    """The items in a foreground mask, largest first."""
    height, width = foreground.shape
    labels, count = ndimage.label(foreground, structure=EIGHT_NEIGHBOURS)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    slices = ndimage.find_objects(labels)
    frame = height * width
    pieces = largest_pieces(sizes, frame)
    # Labels go before grouping: one lying next to the garment must not join it.
    pieces = [i for i in pieces if not is_label_piece(labels, slices[i - 1], i, int(sizes[i]), frame)]
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


def is_label_piece(labels: np.ndarray, where: tuple[slice, ...] | None, index: int, area: int, frame: int) -> bool:
    """A label or sticker: small, and nearly fills its minimum-area rectangle (a garment never does)."""
    if where is None or not LABEL_MIN_FRACTION * frame <= area < LABEL_MAX_FRACTION * frame:
        return False
    # Its own shape: holes filled (a barcode's bars and the paper between them average out to the
    # belt's grey at working resolution), one-pixel fringes gone (belt texture touching its edge).
    piece = ndimage.binary_opening(fill_holes(np.pad(labels[where] == index, 1)), structure=EIGHT_NEIGHBOURS)
    pixels = int(np.count_nonzero(piece))
    if pixels < 8:
        return False
    rect_area, _, _ = min_area_rect(outline_points(piece))
    return pixels >= LABEL_MIN_FILL * rect_area


def touches_frame(mask: np.ndarray) -> bool:
    edges = (mask[0], mask[-1], mask[:, 0], mask[:, -1])
    return any(int(edge.sum()) >= max(2, CUT_OFF_FRACTION * len(edge)) for edge in edges)
