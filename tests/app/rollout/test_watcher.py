"""The roll-out file: applied when it changes, refused whole when it does not parse or names a
refused version (the live version stays)."""

from __future__ import annotations

import asyncio
import os

from test_rollout_roles import serving

from app.config import load_settings
from app.metrics import Metrics
from app.rollout.rollout import Rollout
from app.rollout.watcher import Watcher


def test_the_file_is_applied_when_it_changes_and_a_bad_one_changes_nothing(tmp_path):
    path = tmp_path / "rollout.yaml"
    settings = load_settings(model_backend="null", rollout_file=str(path), model_dir=str(tmp_path))
    metrics = Metrics()

    async def scenario() -> list[tuple[int, int | None, int | None, float]]:
        rollout = Rollout(await serving(9), serving, 4, lambda _: None)
        watcher = Watcher(settings, rollout, metrics)
        seen = []

        async def apply(text: str, mtime: int) -> None:
            path.write_text(text)
            os.utime(path, (mtime, mtime))
            await watcher.poll()
            roles = rollout.roles
            seen.append((roles.live, roles.shadow, roles.canary, roles.canary_fraction))

        await apply("live: 10\nshadow: 11\ncanary: {version: 12, fraction: 0.1}\n", 1000)
        await apply("live: 10\nshadow: 11\ncanary: {version: 12, fraction: 0.1}\n", 1000)  # unchanged: not re-read
        await apply("live: 10\ncanary: {version: 12, fraction: 0.5}\n", 1001)
        await apply("live: [not, a, version]\n", 1002)
        await apply("live: 13\n", 1003)  # 13 is refused by the loader
        await rollout.stop_all(5)
        return seen

    assert asyncio.run(scenario()) == [
        (10, 11, 12, 0.1),
        (10, 11, 12, 0.1),
        (10, None, 12, 0.5),
        (10, None, 12, 0.5),
        (10, None, 12, 0.5),
    ]
    assert metrics.registry.get_sample_value("garment_sorter_rollout_file_errors_total") == 2
