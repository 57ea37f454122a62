"""Admission control in the batcher: the queue bound counts images still on their way (being
read or decoded) as well as queued ones, so overload is refused before any decoding is spent."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from app.inference.batcher import Batcher, QueueFull

STEP_TIMEOUT_S = 5.0


class Drops:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def on_batch(self, size, queue_waits_s, inference_s) -> None:
        pass

    def on_drop(self, reason: str, count: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + count


def test_admit_counts_announced_and_queued_images_against_the_bound() -> None:
    release = threading.Event()

    def held(images: np.ndarray) -> list[int]:
        assert release.wait(STEP_TIMEOUT_S), "the test never released the batch"
        return list(range(len(images)))

    async def scenario() -> None:
        drops = Drops()
        batcher = Batcher(held, max_batch_size=4, max_queue=4, observer=drops)
        # Announced only (being decoded): two requests of two fill the bound.
        with batcher.admit(2), batcher.admit(2), pytest.raises(QueueFull):
            batcher.admit(1)
        with batcher.admit(4):  # leaving the contexts gave every slot back
            pass
        await batcher.start()
        try:
            image = np.zeros((28, 28), np.uint8)
            running = batcher.submit(image)
            deadline = asyncio.get_running_loop().time() + STEP_TIMEOUT_S
            while batcher.queue_depth:  # until the loop has taken it into the (held) batch
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.001)
            queued = batcher.submit_many([image] * 3)
            with batcher.admit(1), pytest.raises(QueueFull):  # 3 queued + 1 on its way = the bound
                batcher.admit(1)
            release.set()
            answers = await asyncio.wait_for(asyncio.gather(running, *queued), STEP_TIMEOUT_S)
            assert [a.row for a in answers] == [0, 0, 1, 2]
            with batcher.admit(4):  # all answered: the whole bound is free again
                pass
        finally:
            release.set()
            await batcher.stop()
        assert drops.counts == {"queue_full": 2}

    asyncio.run(scenario())
