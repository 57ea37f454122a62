"""The review station's session: a signed, HttpOnly, SameSite=Strict cookie, and CSRF tokens.

Every visitor gets a session id (signed in or not), and every form carries a token derived from
it with HMAC: a form posted from another site carries no valid token (and, SameSite=Strict, no
cookie either). Signing in with a reviewer or admin key puts the key's name and role into the
session; the key itself is never stored in the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "sorter_review"
MAX_AGE_S = 12 * 3600  # one shift


@dataclass(frozen=True)
class Session:
    sid: str
    name: str | None = None  # the signed-in key's name
    role: str | None = None


class Sessions:
    def __init__(self, secret: str):
        self._secret = secret.encode()
        self._serializer = URLSafeTimedSerializer(secret, salt="garment-sorter-review-session")

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=MAX_AGE_S)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return None
        return Session(data["sid"], data.get("name"), data.get("role"))

    def new(self, name: str | None = None, role: str | None = None) -> Session:
        return Session(secrets.token_urlsafe(16), name, role)

    def cookie(self, session: Session) -> str:
        return self._serializer.dumps({"sid": session.sid, "name": session.name, "role": session.role})

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._secret, f"csrf:{session.sid}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf_token(session), token)
