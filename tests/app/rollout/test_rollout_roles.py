"""The roll-out's roles and their changes, on real batchers around the null model (no TensorFlow):
promote keeps the previous version, roll back swaps, canary and shadow, limits, refusals."""

from __future__ import annotations

import asyncio
import math

import pytest

from app.config import load_settings
from app.inference.null_model import NullModel
from app.metrics import Metrics
from app.rollout.rollout import Rollout, RolloutError, canary_share
from app.rollout.serving import Serving, build_serving, warm_and_start

SETTINGS = load_settings(model_backend="null")


async def serving(version: int) -> Serving:
    if version == 13:
        raise RolloutError("model_refused", "Version 13 was refused: a broken export")
    built = build_serving(NullModel(batch_sizes=(1, 2, 4), version=version), SETTINGS, Metrics())
    await warm_and_start(built)
    return built


async def new_rollout(max_loaded: int = 3) -> tuple[Rollout, list[tuple[int, int | None]]]:
    changes: list[tuple[int, int | None]] = []
    live = await serving(9)
    rollout = Rollout(live, serving, max_loaded, lambda r: changes.append((r.roles.live, r.roles.previous)))
    return rollout, changes


def test_promote_roll_back_and_forward_again():
    async def scenario():
        rollout, changes = await new_rollout()
        await rollout.promote(10)
        assert (rollout.live.version, rollout.roles.previous) == (10, 9)
        assert await rollout.rollback() == 9
        assert (rollout.live.version, rollout.roles.previous) == (9, 10)
        await rollout.rollback()
        assert rollout.live.version == 10
        assert changes == [(10, 9), (9, 10), (10, 9)]
        assert [(v["version"], v["roles"]) for v in rollout.describe()] == [(9, ["previous"]), (10, ["live"])]
        await rollout.stop_all(5)

    asyncio.run(scenario())


def test_a_refused_version_changes_nothing_and_limits_hold():
    async def scenario():
        rollout, changes = await new_rollout(max_loaded=3)
        with pytest.raises(RolloutError) as refused:
            await rollout.promote(13)
        assert refused.value.code == "model_refused" and rollout.live.version == 9 and changes == []
        await rollout.promote(10)
        await rollout.set_shadow(11)
        with pytest.raises(RolloutError) as full:  # live 10, previous 9, shadow 11: no room for a fourth
            await rollout.set_canary(12, 0.1)
        assert full.value.code == "too_many_versions"
        with pytest.raises(RolloutError) as live:
            await rollout.unload(10)
        assert live.value.code == "version_is_live"
        await rollout.unload(9)  # no roll back possible after this
        with pytest.raises(RolloutError) as nothing:
            await rollout.rollback()
        assert nothing.value.code == "nothing_to_roll_back"
        await rollout.set_canary(12, 0.25)
        assert [(v["version"], v["roles"]) for v in rollout.describe()] == [
            (10, ["live"]),
            (11, ["shadow"]),
            (12, ["canary"]),
        ]
        await rollout.promote(12)  # a canary promoted is no longer a canary
        assert (rollout.roles.live, rollout.roles.previous, rollout.roles.canary, rollout.roles.canary_fraction) == (
            12,
            10,
            None,
            0.0,
        )
        await rollout.stop_all(5)

    asyncio.run(scenario())


def test_the_canary_takes_its_share_of_item_ids_by_hash():
    async def scenario():
        rollout, _ = await new_rollout()
        await rollout.set_canary(10, 0.05)
        ids = [f"SKU-{n:05d}" for n in range(10_000)]
        picked = [rollout.pick(item_id).version for item_id in ids]
        assert picked == [rollout.pick(item_id).version for item_id in ids]  # the same item, the same version
        await rollout.stop_all(5)
        return sum(version == 10 for version in picked)

    canaries = asyncio.run(scenario())
    # Binomial(10,000, 0.05): mean 500, sd 21.8; 5 sd either way.
    assert abs(canaries - 500) <= 5 * math.sqrt(10_000 * 0.05 * 0.95)
    assert all(0.0 <= canary_share(f"x{n}") < 1.0 for n in range(1000))
