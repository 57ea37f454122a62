"""What changes the roll-out without a request: the model directory and the roll-out file.

Without ``SORTER_ROLLOUT_FILE``, a version directory that appears under ``SORTER_MODEL_DIR`` while
the service runs is loaded, warmed and made live (once it is complete and has not changed for a few
seconds: a copy in progress is not a version). Versions present at start, and any version already
tried, are never promoted again by the directory: after a roll back, the rolled-back version stays
out until someone promotes it.

With ``SORTER_ROLLOUT_FILE`` (for Kubernetes and compose: a ConfigMap or a mounted file), the file
is the authority, read whenever it changes::

    live: 10
    shadow: 11                 # optional
    canary: {version: 11, fraction: 0.05}   # optional

A file that does not parse or names a version that is refused changes nothing (log line, metric).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.config import Settings
from app.metrics import Metrics
from app.rollout.rollout import Rollout, RolloutError
from contract.metadata import METADATA_FILE
from contract.versions import SAVED_MODEL_FILE, versions

log = logging.getLogger(__name__)
QUIET_S = 2.0  # a version directory unchanged this long is taken as complete


class Canary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=0)
    fraction: float = Field(ge=0, le=1)


class RolloutFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    live: int = Field(ge=0)
    shadow: int | None = Field(default=None, ge=0)
    canary: Canary | None = None


def read_rollout_file(path: Path) -> RolloutFile:
    """The roll-out file, validated; OSError, yaml.YAMLError or ValidationError when it is not usable."""
    return RolloutFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def _complete_since(version_dir: Path) -> float | None:
    """When the version directory last changed, if it holds what a version needs (None if not)."""
    if not ((version_dir / SAVED_MODEL_FILE).is_file() and (version_dir / METADATA_FILE).is_file()):
        return None
    return max(path.stat().st_mtime for path in [version_dir, *version_dir.rglob("*")])


class Watcher:
    def __init__(self, settings: Settings, rollout: Rollout, metrics: Metrics):
        self.settings = settings
        self.rollout = rollout
        self.metrics = metrics
        self.model_dir = settings.resolved_model_dir()
        self._seen = set(versions(self.model_dir))
        self._file_mtime: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.settings.model_poll_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="model-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # a surprise must not end the watching
                log.exception("model watcher")
            await asyncio.sleep(self.settings.model_poll_s)

    async def poll(self) -> None:
        if self.settings.rollout_file is not None:
            await self._read_file(self.settings.rollout_file)
        else:
            await self._new_versions()

    async def _new_versions(self) -> None:
        for version in sorted(set(versions(self.model_dir)) - self._seen, reverse=True):
            changed = await asyncio.to_thread(_complete_since, self.model_dir / str(version))
            if changed is None or time.time() - changed < QUIET_S:
                continue  # still being copied: look again next time
            self._seen.add(version)
            if version < self.rollout.roles.live:
                log.info("model version %d appeared below the live %d: not promoted", version, self.rollout.roles.live)
                continue
            with contextlib.suppress(RolloutError):  # refused: logged and counted by the loader
                await self.rollout.promote(version)
            return

    async def _read_file(self, path: Path) -> None:
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._file_mtime:
            return
        self._file_mtime = mtime
        try:
            wanted = read_rollout_file(path)
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            self.metrics.rollout_file_error()
            log.error("roll-out file %s not applied: %s", path, str(exc).splitlines()[0])
            return
        try:
            if wanted.live != self.rollout.roles.live:
                await self.rollout.promote(wanted.live)
            if wanted.shadow != self.rollout.roles.shadow:
                await self.rollout.set_shadow(wanted.shadow)
            canary = wanted.canary
            await self.rollout.set_canary(
                None if canary is None else canary.version, 0.0 if canary is None else canary.fraction
            )
        except RolloutError as exc:
            self.metrics.rollout_file_error()
            log.error("roll-out file %s not fully applied: %s", path, exc)
            return
        log.info("roll-out file %s applied: %s", path, wanted.model_dump(exclude_none=True))
