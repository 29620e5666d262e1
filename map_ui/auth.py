"""Login, argon2 password hashes, signed sliding session cookie, roles and CSRF checks."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import HTTPException, Request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

log = logging.getLogger(__name__)

COOKIE = "emon_session"
ROLES = ("dispatcher", "admin")
_hasher = PasswordHasher()
# verifying against this keeps the timing the same whether or not the user exists
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class User:
    username: str
    role: str
    csrf: str
    sid: str
    issued_at: float

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class NotAuthenticated(Exception):
    """No valid session: 401 for the API, redirect to /login for pages."""


class SessionCodec:
    """Sessions live in a signed cookie re-issued on every request (sliding idle timeout)."""

    def __init__(self, key: str, idle_s: int, max_s: int, secure: bool) -> None:
        self._s = URLSafeTimedSerializer(key, salt="emon-map-session")
        self.idle_s = idle_s
        self.max_s = max_s
        self.secure = secure
        self._revoked: dict[str, float] = {}  # sid -> revoked at (logout)

    def issue(self, username: str, role: str) -> tuple[str, User]:
        user = User(username, role, secrets.token_urlsafe(24), secrets.token_urlsafe(12), time.time())
        return self.dump(user), user

    def dump(self, user: User) -> str:
        return self._s.dumps({"u": user.username, "r": user.role, "c": user.csrf, "s": user.sid,
                              "i": user.issued_at})

    def load(self, token: str | None) -> User | None:
        if not token:
            return None
        try:
            d = self._s.loads(token, max_age=self.idle_s)
        except (SignatureExpired, BadSignature):
            return None
        try:
            user = User(str(d["u"]), str(d["r"]), str(d["c"]), str(d["s"]), float(d["i"]))
        except (KeyError, TypeError, ValueError):
            return None
        if user.role not in ROLES or time.time() - user.issued_at > self.max_s or user.sid in self._revoked:
            return None
        return user

    def revoke(self, user: User) -> None:
        now = time.time()
        self._revoked[user.sid] = now
        for sid, at in list(self._revoked.items()):  # forget revocations older than any valid cookie
            if now - at > self.max_s:
                del self._revoked[sid]

    def set_cookie(self, response: Any, token: str) -> None:
        response.set_cookie(COOKIE, token, max_age=self.idle_s, httponly=True, secure=self.secure,
                            samesite="strict", path="/")

    def clear_cookie(self, response: Any) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, secure=self.secure, samesite="strict")


def current_user(request: Request) -> User:
    """Dependency: the logged-in user (set by the session middleware) or 401."""
    user = getattr(request.state, "user", None)
    if user is None:
        raise HTTPException(status_code=401, detail="not authenticated", headers={"WWW-Authenticate": "Session"})
    return user


def require_admin(request: Request) -> User:
    user = current_user(request)
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="admin role required")
    return user


def check_csrf(request: Request, user: User, form_token: str | None = None) -> None:
    """State-changing requests carry the session's CSRF token (header or form field) and,
    when the browser says where they come from, come from this site."""
    token = form_token or request.headers.get("x-csrf-token") or ""
    if not hmac.compare_digest(token.encode(), user.csrf.encode()):
        raise HTTPException(status_code=403, detail="missing or bad CSRF token")
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise HTTPException(status_code=403, detail="cross-origin request refused")
