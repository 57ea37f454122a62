"""Pieces and items: specks, the largest pieces only, labels, grouping, holes, the frame's edge."""

from __future__ import annotations

import numpy as np

from app.inference.segmentation import pieces


def test_only_the_largest_pieces_are_grouped_and_specks_never():
    frame = 10_000  # a speck is below 5 pixels
    sizes = np.array([9_000, *range(100, 0, -1), 3, 4])  # background, 100 pieces of 100..1 pixels, two specks
    chosen = pieces.largest_pieces(sizes, frame)
    assert chosen == list(range(1, pieces.MAX_PIECES + 1))  # labels of the 32 largest, largest first
    assert pieces.largest_pieces(np.array([9_000, 3, 4, 200]), frame) == [3]


def test_foreground_takes_faint_pixels_only_where_they_touch_clear_ones():
    dist = np.zeros((20, 20), np.float32)
    dist[5:10, 5:10] = 30.0  # clearly foreground
    dist[5:10, 10:14] = 9.0  # faint, touching it: joins
    dist[15:18, 15:18] = 9.0  # faint, alone: belt
    mask = pieces.foreground(dist, threshold=16.0)
    assert mask[5:10, 5:14].all() and not mask[15:18, 15:18].any()
    assert mask.sum() == 5 * 9


def test_fill_holes_fills_what_does_not_reach_the_edge():
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[5, 5] = False  # enclosed: filled
    ring[2:4, 3] = False  # a notch open to the outside: stays open
    filled = pieces.fill_holes(ring)
    assert filled[5, 5] and not filled[2, 3] and not filled[3, 3] and not filled[0, 0]


def test_a_label_is_a_small_piece_that_fills_its_rectangle():
    labels = np.zeros((100, 100), np.int32)
    labels[10:30, 10:50] = 1  # a 20x40 sticker
    where = (slice(10, 30), slice(10, 50))
    assert pieces.is_label_piece(labels, where, 1, 800, frame=100_000)
    assert not pieces.is_label_piece(labels, where, 1, 800, frame=10_000)  # 8 % of the frame: too large
    labels[20:30, 10:30] = 0  # an L shape: half its rectangle
    assert not pieces.is_label_piece(labels, where, 1, 600, frame=100_000)


def test_a_label_with_a_ragged_paper_edge_is_told_by_its_clear_part():
    labels = np.zeros((100, 100), np.int32)
    labels[10:30, 10:50] = 1  # the print, clear of the belt
    for left in range(10, 50, 6):
        labels[5:10, left : left + 3] = 1  # the paper's ragged edge, at the foreground floor
    where = (slice(5, 30), slice(10, 50))
    clear = np.zeros((100, 100), bool)
    clear[10:30, 10:50] = True
    assert not pieces.is_label_piece(labels, where, 1, 900, frame=100_000)
    assert pieces.is_label_piece(labels, where, 1, 900, frame=100_000, clear=clear)


def test_a_thin_garment_whose_clear_part_is_a_speck_is_not_a_label():
    labels = np.zeros((100, 100), np.int32)
    labels[10:16, 10:70] = 1  # a sandal's sole, faint under a shadow ...
    labels[4:10, 30:34] = 1  # ... and its strap
    where = (slice(4, 16), slice(10, 70))
    clear = np.zeros((100, 100), bool)
    clear[11:15, 40:44] = True  # only a dark buckle stands out clearly: a square of 16 pixels
    assert not pieces.is_label_piece(labels, where, 1, 384, frame=100_000, clear=clear)


def test_an_item_touching_the_frame_over_a_few_pixels_is_cut_off():
    mask = np.zeros((100, 100), bool)
    mask[40:60, 40:60] = True
    assert not pieces.touches_frame(mask)
    mask[40:60, 0:40] = True  # 20 pixels along the left edge
    assert pieces.touches_frame(mask)
    single = np.zeros((100, 100), bool)
    single[50, 0] = True  # one pixel: noise, not an edge
    assert not pieces.touches_frame(single)
