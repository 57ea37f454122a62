"""Every tunable of the service: one pydantic-settings class, environment prefix ``SORTER_``.

Settings are read and validated once at start-up; a bad value stops the process with a message
that names the environment variable (see :func:`load_settings`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.access import Keyring
from contract.seasons import DEFAULT_POLICY_FILE

ENV_PREFIX = "SORTER_"
PACKAGE_DIR = Path(__file__).resolve().parent
MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True, protected_namespaces=())

    # Model
    model_dir: Path = Field(
        Path("models/fashion-cnn"),
        description="Directory of integer model versions; the highest complete one is served",
    )
    model_backend: Literal["tensorflow", "null"] = Field(
        "tensorflow", description="'null' skips inference (constant output): the benchmark's ceiling"
    )
    tf_intra_op_threads: int | None = Field(
        None, ge=0, description="TensorFlow intra-op threads; unset: one per core; 0: TensorFlow's default"
    )
    tf_inter_op_threads: int = Field(1, ge=0, description="TensorFlow inter-op threads (one batch runs at a time)")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Which exported signature runs; auto: bfloat16 where the CPU computes it natively "
        "(AVX512-BF16 or AMX) and the model exports it, else float32",
    )

    # Roll-out
    model_poll_s: float = Field(
        5.0,
        ge=0,
        description="How often the model directory (or the roll-out file) is looked at for changes; 0: never "
        "(versions change only through the admin API)",
    )
    rollout_file: Path | None = Field(
        None, description="A YAML file naming the live, shadow and canary versions; read whenever it changes"
    )
    max_loaded_versions: int = Field(
        3, ge=1, le=8, description="Model versions resident at once (live, previous, shadow or canary)"
    )

    # Batching
    max_batch_size: int = Field(64, ge=1, le=1024, description="Most images per model call; 1 turns batching off")
    max_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="How long a batch may wait for more images known to be on their way"
    )
    max_queue: int = Field(1024, ge=1, description="Images admitted and not yet answered; beyond it 503 queue_full")
    request_timeout_s: float = Field(5.0, gt=0, description="Per-request deadline; expired requests get 504")

    # Input limits
    max_body_bytes: int = Field(10 * MiB, ge=1024, description="POST /classify body limit (and per batch file)")
    max_batch_body_bytes: int = Field(256 * MiB, ge=1024, description="POST /classify/batch body limit")
    max_batch_files: int = Field(256, ge=1, description="Files per POST /classify/batch; more: 413 too_many_files")
    max_image_pixels: int = Field(40_000_000, ge=784, description="Larger images are refused before decoding")
    # At most the decision log's item_id column (app.records.schema.ITEM_ID_LENGTH).
    max_item_id_length: int = Field(128, ge=1, le=128, description="Longest item_id (characters); longer: 422")
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="Request line plus headers; a larger head is answered 431 (serve only)"
    )
    default_top_k: int = Field(3, ge=1, le=10, description="Classes in top_k when the request does not say")

    # Preprocessing
    resize: Literal["antialias", "subsample"] = Field(
        "antialias", description="How the longest edge is brought to 28 px (benchmark: `python -m bench preprocess`)"
    )
    inline_decode_max_pixels: int = Field(
        256 * 256, ge=0, description="Images up to this size are decoded on the event loop, larger ones in a thread"
    )
    preprocess_threads: int = Field(2, ge=1, description="Threads decoding large images and batch requests")

    # Sorting policy
    policy_file: Path = Field(DEFAULT_POLICY_FILE, description="Sorting policy: class -> season -> bin, zones")
    review_threshold: float | None = Field(
        None, ge=0, le=1, description="Overrides the model's metadata and the policy file"
    )
    hemisphere: Literal["northern", "southern"] | None = Field(None, description="Overrides the policy file")

    # Security
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="Comma-separated, each name:role:secret (role: scanner, reviewer or admin) or a bare "
        "secret (an admin); empty: no authentication",
    )
    metrics_require_key: bool = Field(False, description="With API keys set, /metrics needs one too")
    session_secret: str | None = Field(
        None,
        repr=False,
        min_length=32,
        description="Signs the review station's session cookies; the same on every replica. Unset: a "
        "random one per process (reviewers sign in again after a restart)",
    )

    # Decision log
    data_dir: Path = Field(
        Path("data"),
        description="Where the service keeps its records: the embedded database, the spool and kept photos",
    )
    database_url: str | None = Field(
        None,
        repr=False,
        description="SQLAlchemy URL of the decision log (postgresql://... for several replicas); "
        "unset: SQLite in SORTER_DATA_DIR",
    )
    decision_log: bool = Field(True, description="Record every decision; off only to measure what recording costs")
    audit_rate: float = Field(
        0.01, ge=0, le=1, description="Share of auto-sorted items whose photo is kept for the audit sample"
    )
    photo_retention_days: float = Field(
        30.0, gt=0, description="Kept photos are removed this long after they were stored; decisions stay"
    )

    # Lifecycle
    drain_timeout_s: float = Field(30.0, ge=0, description="On SIGTERM, how long admitted work may take to finish")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="Log level")
    access_log: bool = Field(
        False,
        description="One log line per answered request: method, route, status, duration, request id, caller, "
        "decision id, model version",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="A request line and headers must arrive within this; else 408 and the connection closed"
    )
    body_min_bytes_per_s: int = Field(
        1024,
        ge=0,
        description="After its first SORTER_HEADER_TIMEOUT_S, a request body must average at least this; "
        "else 408 and closed (0: no limit)",
    )
    max_connections: int = Field(
        2048, ge=1, description="Open client connections; one more is answered 503 too_many_connections and closed"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text for a terminal; json: one object per line, with the request id (the image's default)"
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, keys: list[str]) -> list[str]:
        Keyring.parse(keys)  # raises ValueError naming the problem
        return keys

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.max_batch_files > self.max_queue:
            raise ValueError(
                f"max_batch_files ({self.max_batch_files}) exceeds max_queue ({self.max_queue}): "
                "a full batch request could never be queued"
            )
        return self

    @property
    def intra_op_threads(self) -> int:
        if self.tf_intra_op_threads is not None:
            return self.tf_intra_op_threads
        # Every core: on 2 vCPUs a 256-image /classify/batch gains 28 % over keeping one core for
        # the event loop, single-image throughput loses 7-11 % (docs/benchmarks.md); cores - 1
        # (SORTER_TF_INTRA_OP_THREADS=1 here) is the choice for single-image-only traffic.
        return max(1, os.cpu_count() or 1)

    @property
    def keyring(self) -> Keyring:
        return Keyring.parse(self.api_keys)

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000.0

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'decisions.db'}"

    def resolved_model_dir(self) -> Path:
        """The model directory; a relative path missing from the working directory is also looked
        up beside the package, so the installed console script works from anywhere in the repo."""
        if self.model_dir.is_absolute() or self.model_dir.exists():
            return self.model_dir
        beside_package = PACKAGE_DIR.parent / self.model_dir
        return beside_package if beside_package.exists() else self.model_dir


class SettingsError(ValueError):
    """Invalid configuration; the message names every offending environment variable."""


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        name = f"{ENV_PREFIX}{field.upper()}" if error["loc"] else "settings"
        given = error.get("input")
        shown = (
            ""
            if field in ("api_keys", "database_url", "session_secret") or isinstance(given, dict)
            else f" (got {given!r})"
        )
        lines.append(f"{name}: {error['msg']}{shown}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (plus explicit overrides) and validate, or raise SettingsError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
