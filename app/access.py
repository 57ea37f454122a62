"""API keys: who calls (a name for the decision log) and what they may do (a role).

``SORTER_API_KEYS`` holds comma-separated entries, each either ``name:role:secret`` or a bare
secret (the format before roles existed). A bare secret keeps doing what it did: every route, as
an ``admin``, named ``key-`` plus the first 8 hex digits of its SHA-256 (a stable name that does
not reveal the key). With no keys at all, everything is open and callers have no name.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from enum import StrEnum

MIN_SECRET_LENGTH = 16


class Role(StrEnum):
    SCANNER = "scanner"  # classify
    REVIEWER = "reviewer"  # the review station and the review API
    ADMIN = "admin"  # everything


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: Role
    secret: str = field(repr=False)

    def may(self, role: Role) -> bool:
        """Whether this key may use a route meant for ``role`` (admin may use every route)."""
        return self.role in (role, Role.ADMIN)


def parse_key(entry: str) -> ApiKey:
    """One ``SORTER_API_KEYS`` entry; ValueError names what is wrong (never the secret)."""
    parts = entry.split(":", 2)
    if len(parts) == 3 and parts[1] in {role.value for role in Role}:
        name, role, secret = parts
        if not name.strip():
            raise ValueError("a key's name must not be empty (name:role:secret)")
        key = ApiKey(name.strip(), Role(role), secret)
    else:
        digest = hashlib.sha256(entry.encode()).hexdigest()[:8]
        key = ApiKey(f"key-{digest}", Role.ADMIN, entry)
    if len(key.secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"every API key needs at least {MIN_SECRET_LENGTH} characters ({key.name}'s is shorter)")
    return key


@dataclass(frozen=True)
class Keyring:
    keys: tuple[ApiKey, ...]

    @classmethod
    def parse(cls, entries: list[str]) -> Keyring:
        keys = tuple(parse_key(entry) for entry in entries)
        names = [key.name for key in keys]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"API key names must be unique ({', '.join(repeated)} repeated)")
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def find(self, supplied: str | None) -> ApiKey | None:
        """The key whose secret is ``supplied``. Every key is compared, in constant time, so
        timing reveals neither a key nor its position."""
        given = (supplied or "").encode()
        found = None
        for key in self.keys:
            if hmac.compare_digest(given, key.secret.encode()):
                found = key
        return found
