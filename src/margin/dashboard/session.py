"""Dashboard sessions: the admin key, typed once into the login form, becomes a signed, expiring
session cookie (HttpOnly, Secure, SameSite=Strict); the key itself is never stored in the cookie or
rendered. Every state-changing form carries a CSRF token: before login a double-submit token (a
cookie and the same value in the form), after it a token bound to the session."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_COOKIE = "margin_session"
LOGIN_CSRF_COOKIE = "margin_login_csrf"
SESSION_TTL_S = 8 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    expires: int


class SessionSigner:
    def __init__(self, admin_key: str, clock: Callable[[], float] = time.time) -> None:
        # Derived, so the cookie's signature never reveals the key (and rotating the key logs everyone out).
        self._secret = hashlib.sha256(b"margin-dashboard-session\0" + admin_key.encode()).digest()
        self._admin_key = admin_key.encode()
        self._clock = clock

    def is_admin_key(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._admin_key)

    def new_cookie(self) -> str:
        expires = int(self._clock()) + SESSION_TTL_S
        nonce = secrets.token_urlsafe(16)
        return f"{expires}.{nonce}.{self._sign(f'{expires}.{nonce}')}"

    def session(self, cookie: str | None) -> Session | None:
        """The session `cookie` opens: None when it is missing, forged or expired."""
        if not cookie or cookie.count(".") != 2:
            return None
        expires, nonce, signature = cookie.split(".")
        if not expires.isdigit() or not hmac.compare_digest(signature, self._sign(f"{expires}.{nonce}")):
            return None
        if int(expires) <= self._clock():
            return None
        return Session(nonce, int(expires))

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf.{session.nonce}")

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()


def cookie_header(name: str, value: str, max_age: int, path: str = "/") -> str:
    return f"{name}={value}; Max-Age={max_age}; Path={path}; HttpOnly; Secure; SameSite=Strict"
