"""What the published suite measures: the concurrency levels, sweeps and soak limits."""

from __future__ import annotations

CONCURRENCY = (1, 2, 4, 8, 16, 32, 64, 128)
MAX_WAIT_MS = (0, 1, 2, 5, 10)
MAX_WAIT_CONCURRENCY = (16, 64)
BATCH_FILES = (1, 8, 32, 64, 128, 256)
RAW_BATCH_SIZES = (1, 8, 32, 64, 128, 256)
SOAK_WINDOW_S = 60.0
SOAK_RSS_GROWTH_LIMIT = 0.05
SOAK_P99_DRIFT_LIMIT = 1.5  # last window's p99 over the first (post-warm-up) window's
