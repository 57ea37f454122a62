"""One loaded model version, ready to answer: the model, its sorting policy, its own batcher.

Each version has its own batcher, so a batch is always run by one model, and a request admitted by
a version finishes on it whatever the roll-out does meanwhile. Loading checks everything the
contract says (metadata, signature, class count, the policy against the classes) and warms every
padded batch size before the version may take a request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from app.config import Settings
from app.inference.batcher import Batcher, BatchObserver
from app.inference.model import Images, Model
from app.policy import Policy, load_policy_for
from app.service.answers import Row, infer_rows


@dataclass(eq=False)
class Serving:
    model: Model
    policy: Policy
    batcher: Batcher
    model_ref: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return self.model.version

    @property
    def ready(self) -> bool:
        return self.batcher.running

    def describe(self) -> dict[str, Any]:
        return {"name": self.model.name, "version": self.model.version}


def build_serving(model: Model, settings: Settings, observer: BatchObserver) -> Serving:
    """The version's policy (checked against its classes: PolicyError) and its batcher, not started."""
    policy = load_policy_for(settings, model.class_names, model.review_threshold)

    def infer(images: Images) -> list[Row]:  # the batcher's worker thread
        return infer_rows(model, policy, images)

    batcher = Batcher(
        infer,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_wait_s,
        max_queue=settings.max_queue,
        timeout_s=settings.request_timeout_s,
        observer=observer,
        name=f"batcher-v{model.version}",
        padded_sizes=model.batch_sizes,
    )
    return Serving(model, policy, batcher, {"name": model.name, "version": model.version})


async def warm_and_start(serving: Serving) -> None:
    """Warm the model at every padded batch size (in a thread), then start its batcher."""
    await asyncio.to_thread(serving.model.warmup)
    await serving.batcher.start()
