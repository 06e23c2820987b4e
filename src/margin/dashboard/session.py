"""Dashboard sessions: the admin key, typed once into the login form, becomes a signed, expiring
session cookie (HttpOnly, Secure, SameSite=Strict); the key itself is never stored in the cookie or
rendered. A viewer key (a virtual key tagged `dashboard:viewer`) logs in the same way and its
session is scoped to its team; an org viewer key (tagged `dashboard:org-viewer`) to its org: the
scope is signed into the cookie. Every state-changing form
carries a CSRF token: before login a double-submit token (a cookie and the same value in the form),
after it a token bound to the session."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_COOKIE = "margin_session"
LOGIN_CSRF_COOKIE = "margin_login_csrf"
SESSION_TTL_S = 8 * 3600


VIEWER_TAG = "dashboard:viewer"
ORG_VIEWER_TAG = "dashboard:org-viewer"
ORG_PREFIX = "org~"  # never in a base64url team scope


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whose figures a session or key sees: a team's, an org's, or (both None) every team's."""

    team: str | None = None
    org: str | None = None

    @property
    def limited(self) -> bool:
        return self.team is not None or self.org is not None


ADMIN = Viewer()


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    expires: int
    team: str | None = None  # a viewer's team; None: the admin, who sees every team
    org: str | None = None  # an org viewer's org

    @property
    def viewer(self) -> Viewer:
        return Viewer(self.team, self.org)


class SessionSigner:
    def __init__(self, admin_key: str, clock: Callable[[], float] = time.time) -> None:
        # Derived, so the cookie's signature never reveals the key (and rotating the key logs everyone out).
        self._secret = hashlib.sha256(b"margin-dashboard-session\0" + admin_key.encode()).digest()
        self._admin_key = admin_key.encode()
        self._clock = clock

    def is_admin_key(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._admin_key)

    def new_cookie(self, team: str | None = None, org: str | None = None) -> str:
        expires = int(self._clock()) + SESSION_TTL_S
        nonce = secrets.token_urlsafe(16)
        scope = "*" if team is None else _encoded(team)
        if org is not None and team is None:
            scope = ORG_PREFIX + _encoded(org)
        signed = f"{expires}.{nonce}.{scope}"
        return f"{signed}.{self._sign(signed)}"

    def session(self, cookie: str | None) -> Session | None:
        """The session `cookie` opens: None when it is missing, forged or expired."""
        if not cookie or cookie.count(".") != 3:
            return None
        expires, nonce, scope, signature = cookie.split(".")
        if not expires.isdigit() or not hmac.compare_digest(signature, self._sign(f"{expires}.{nonce}.{scope}")):
            return None
        if int(expires) <= self._clock():
            return None
        if scope == "*":
            return Session(nonce, int(expires))
        if scope.startswith(ORG_PREFIX):
            org = _decoded(scope.removeprefix(ORG_PREFIX))
            return None if org is None else Session(nonce, int(expires), org=org)
        team = _decoded(scope)
        return None if team is None else Session(nonce, int(expires), team)

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf.{session.nonce}")

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()


def _encoded(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _decoded(scope: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(scope + "=" * (-len(scope) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None  # signed by us, so never reached: no session rather than a wider one


def cookie_header(name: str, value: str, max_age: int, path: str = "/") -> str:
    return f"{name}={value}; Max-Age={max_age}; Path={path}; HttpOnly; Secure; SameSite=Strict"
