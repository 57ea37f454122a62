"""Finding the garment in a scanner photo, before the dataset recipe runs (``preprocess``).

The recipe assumes a catalog photo: an even, light background and nothing else in frame. A belt
photo breaks each assumption, so, on a small working image:

- ``belt``: the belt and the light on it, fitted along the border, then over all the belt in view;
  the photo under even light; each pixel's distance from the belt's colour;
- ``texture``: on a grooved or ribbed belt, what lies smooth on it (a black garment on black rubber);
- ``pieces``: what stands out from the belt, as pieces; labels and stickers dropped; pieces close
  together grouped into items;
- ``pose``: the minimum-area rectangle, for labels and for the garment's tilt;
- ``segment``: the whole step: the garment composited upright on the dataset's light background,
  its box, and the reasons the photo needs a person's look.
"""
