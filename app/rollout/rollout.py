"""Which loaded version answers: the live one, a canary share of requests, a shadow that sees
copies, and the previous live version kept for a one-request roll back.

Every change is a pointer swap on the event loop, between two batches: a request that was admitted
by a version's batcher finishes there, and the next request is routed by the new state. Loading
and warming a version happens before it may take any role, in a thread, while the live version
serves; a version that fails to load, warm or match the contract is refused and nothing changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.rollout.serving import Serving

log = logging.getLogger(__name__)

Loader = Callable[[int], Awaitable[Serving]]  # load, check and warm one version (raises on refusal)
STOP_TIMEOUT_S = 30.0  # an unloaded version's batcher finishes what it admitted


class RolloutError(Exception):
    """A change that cannot be made (code: the API's error code)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def canary_share(item_id: str | None) -> float:
    """Where a request falls in [0, 1): by a hash of item_id (the same item always on the same
    side, on every replica), at random without one."""
    if item_id is None:
        return random.random()
    digest = hashlib.sha256(b"canary:" + item_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Roles:
    live: int
    previous: int | None = None
    shadow: int | None = None
    canary: int | None = None
    canary_fraction: float = 0.0


class Rollout:
    def __init__(self, live: Serving, loader: Loader, max_loaded: int, on_change: Callable[[Rollout], None]):
        self._loaded: dict[int, Serving] = {live.version: live}
        self.roles = Roles(live=live.version)
        self._loader = loader
        self._max_loaded = max_loaded
        self._on_change = on_change
        self._lock = asyncio.Lock()

    # --- routing (every request) ----------------------------------------------------------------
    @property
    def live(self) -> Serving:
        return self._loaded[self.roles.live]

    @property
    def shadow(self) -> Serving | None:
        return None if self.roles.shadow is None else self._loaded[self.roles.shadow]

    def pick(self, item_id: str | None) -> Serving:
        roles = self.roles
        if roles.canary is not None and canary_share(item_id) < roles.canary_fraction:
            return self._loaded[roles.canary]
        return self._loaded[roles.live]

    def loaded(self) -> list[Serving]:
        return list(self._loaded.values())

    def describe(self) -> list[dict[str, Any]]:
        roles = self.roles
        out = []
        for version, serving in sorted(self._loaded.items()):
            held = [
                name
                for name, holder in (
                    ("live", roles.live),
                    ("previous", roles.previous),
                    ("shadow", roles.shadow),
                    ("canary", roles.canary),
                )
                if holder == version
            ]
            out.append(
                {
                    **serving.describe(),
                    "roles": held,
                    **({"canary_fraction": roles.canary_fraction} if roles.canary == version else {}),
                }
            )
        return out

    # --- changes (admin API, roll-out file, model directory) -------------------------------------
    async def load(self, version: int) -> Serving:
        async with self._lock:
            return await self._load(version)

    async def promote(self, version: int) -> None:
        async with self._lock:
            if version == self.roles.live:
                return
            await self._load(version)
            old = self.roles
            self._set(
                Roles(
                    live=version,
                    previous=old.live,
                    shadow=None if old.shadow == version else old.shadow,
                    canary=None if old.canary == version else old.canary,
                    canary_fraction=0.0 if old.canary == version else old.canary_fraction,
                )
            )
            log.info("model version %d is live (was %d)", version, old.live)
            await self._unload_spare()

    async def rollback(self) -> int:
        async with self._lock:
            old = self.roles
            if old.previous is None:
                raise RolloutError("nothing_to_roll_back", "No previous version is loaded to roll back to.")
            self._set(Roles(old.previous, old.live, old.shadow, old.canary, old.canary_fraction))
            log.warning("rolled back: model version %d is live again (%d is previous)", old.previous, old.live)
            return old.previous

    async def set_shadow(self, version: int | None) -> None:
        async with self._lock:
            if version is not None:
                self._not_live(version)
                await self._load(version)
            old = self.roles
            self._set(Roles(old.live, old.previous, version, old.canary, old.canary_fraction))
            await self._unload_spare()

    async def set_canary(self, version: int | None, fraction: float = 0.0) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise RolloutError("validation_error", f"fraction must be in [0, 1] (got {fraction})")
        async with self._lock:
            if version is not None:
                self._not_live(version)
                await self._load(version)
            old = self.roles
            self._set(Roles(old.live, old.previous, old.shadow, version, fraction if version is not None else 0.0))
            await self._unload_spare()

    async def unload(self, version: int) -> None:
        async with self._lock:
            if version == self.roles.live:
                raise RolloutError("version_is_live", f"Version {version} is live; promote another first.")
            if version not in self._loaded:
                raise RolloutError("version_not_loaded", f"Version {version} is not loaded.")
            old = self.roles
            self._set(
                Roles(
                    old.live,
                    None if old.previous == version else old.previous,
                    None if old.shadow == version else old.shadow,
                    None if old.canary == version else old.canary,
                    0.0 if old.canary == version else old.canary_fraction,
                )
            )
            await self._stop(version)

    async def stop_all(self, timeout_s: float) -> None:
        await asyncio.gather(*(serving.batcher.stop(timeout_s) for serving in self._loaded.values()))

    # --- inside the lock ------------------------------------------------------------------------
    def _not_live(self, version: int) -> None:
        if version == self.roles.live:
            raise RolloutError("version_is_live", f"Version {version} is already live.")

    def _set(self, roles: Roles) -> None:
        self.roles = roles
        self._on_change(self)

    async def _load(self, version: int) -> Serving:
        serving = self._loaded.get(version)
        if serving is not None:
            return serving
        if len(self._loaded) >= self._max_loaded and not self._spare():
            raise RolloutError(
                "too_many_versions",
                f"{len(self._loaded)} versions are loaded (SORTER_MAX_LOADED_VERSIONS); unload one first.",
            )
        serving = await self._loader(version)  # raises on refusal; nothing changed
        self._loaded[version] = serving
        await self._unload_spare(keep=version)
        return serving

    def _spare(self) -> list[int]:
        """Loaded versions that hold no role: the first to go when room is needed."""
        roles = self.roles
        held = {roles.live, roles.previous, roles.shadow, roles.canary}
        return [version for version in sorted(self._loaded) if version not in held]

    async def _unload_spare(self, keep: int | None = None) -> None:
        for version in self._spare():
            if len(self._loaded) <= self._max_loaded:
                return
            if version != keep:
                await self._stop(version)

    async def _stop(self, version: int) -> None:
        serving = self._loaded.pop(version)
        await serving.batcher.stop(STOP_TIMEOUT_S)
        log.info("model version %d unloaded", version)
