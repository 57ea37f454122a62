"""The service's one notion of readiness (Phase), its in-flight accounting and the drain."""

from __future__ import annotations

import asyncio

import pytest

from app.metrics import Metrics
from app.service.lifecycle import Lifecycle, Phase


def gauges(metrics: Metrics) -> tuple[float | None, float | None]:
    """garment_sorter_ready and garment_sorter_draining, as a scrape would read them."""
    read = metrics.registry.get_sample_value
    return read("garment_sorter_ready"), read("garment_sorter_draining")


def make(drain_timeout_s: float = 5.0, work_idle: bool = True) -> tuple[Lifecycle, list[bool]]:
    exits: list[bool] = []
    lifecycle = Lifecycle(Metrics(), drain_timeout_s, lambda: work_idle)
    lifecycle.server_exit = exits.append
    return lifecycle, exits


def state(lifecycle: Lifecycle) -> tuple[bool, bool, bool, tuple[float | None, float | None]]:
    """(ready for new traffic, serves admitted work, shutting down, (ready gauge, draining gauge))."""
    return (
        lifecycle.ready_for_traffic,
        lifecycle.serves_admitted_work,
        lifecycle.shutting_down,
        gauges(lifecycle.metrics),
    )


def test_phases_say_who_may_send_work():
    lifecycle, _ = make()
    assert lifecycle.phase is Phase.STARTING and state(lifecycle) == (False, False, False, (0, 0))
    lifecycle.serving()
    assert state(lifecycle) == (True, True, False, (1, 0)) and lifecycle.wait_serving(0)

    async def drain() -> None:
        lifecycle.begin_drain()
        assert lifecycle.phase is Phase.DRAINING and state(lifecycle) == (False, True, True, (0, 1))
        await asyncio.sleep(0.05)

    asyncio.run(drain())
    lifecycle.stopped()
    assert lifecycle.phase is Phase.STOPPED and state(lifecycle) == (False, False, True, (0, 0))


def test_a_failed_warm_up_stays_unready_with_its_reason():
    lifecycle, _ = make()
    lifecycle.warmup_failed("ModelError: probabilities do not sum to 1")
    assert lifecycle.phase is Phase.WARMUP_FAILED and not lifecycle.ready_for_traffic
    assert lifecycle.warmup_error == "ModelError: probabilities do not sum to 1"
    assert not lifecycle.wait_serving(0)


def test_the_drain_waits_for_admitted_work_then_asks_the_server_to_exit():
    lifecycle, exits = make()
    lifecycle.serving()

    async def scenario() -> None:
        lifecycle.request_started()
        lifecycle.begin_drain()
        lifecycle.begin_drain()  # a second call changes nothing
        await asyncio.sleep(0.1)
        assert exits == [] and lifecycle.inflight == 1
        lifecycle.request_finished()
        await asyncio.sleep(0.1)
        assert exits == [False]  # drained in time: a normal exit

    asyncio.run(scenario())


@pytest.mark.parametrize("work_idle", [False, True])
def test_a_drain_past_its_budget_forces_the_exit(work_idle):
    lifecycle, exits = make(drain_timeout_s=0.1, work_idle=work_idle)
    lifecycle.serving()

    async def scenario() -> None:
        if work_idle:
            lifecycle.request_started()  # a request that never finishes
        lifecycle.begin_drain()
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert exits == [True]
