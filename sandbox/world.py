"""In-memory state of the fake Meta: apps, users, tokens, codes, plus whatever areas attach.

One World per sandbox server. Handlers run on many threads, so anything that reads-then-writes
takes `world.lock`. Areas keep their own state in `world.area(name)`; it is rebuilt by their
seed hook on every reset.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SEED_APP_ID = "1234567890"
SEED_APP_SECRET = "sandbox-app-secret"
OTHER_APP_ID = "9876543210"
OTHER_APP_SECRET = "other-app-secret"
# Our callback on any local port, as the devstack and the tests bind ephemeral ports.
LOCAL_CALLBACKS = (
    r"http://127\.0\.0\.1(:\d+)?/crm/auth/meta/callback",
    r"http://localhost(:\d+)?/crm/auth/meta/callback",
)
SHORT_LIVED_SECONDS = 2 * 3600
LONG_LIVED_SECONDS = 5183944  # LL: "expires_in":5183944, about 60 days
DATA_ACCESS_SECONDS = 90 * 86400  # AVD: data access expires after 90 days
CODE_TTL_SECONDS = 600


@dataclass
class App:
    id: str
    secret: str
    name: str
    redirect_uris: list[str] = field(default_factory=list)
    redirect_patterns: list[str] = field(default_factory=list)
    require_appsecret_proof: bool = True

    def allows_redirect(self, uri: str) -> bool:
        if uri in self.redirect_uris:
            return True
        return any(re.fullmatch(p, uri) for p in self.redirect_patterns)

    @property
    def app_token(self) -> str:
        return f"{self.id}|{self.secret}"


@dataclass
class User:
    id: str
    name: str


@dataclass
class Token:
    value: str
    app_id: str
    user_id: str
    scopes: list[str]
    issued_at: int
    expires_at: int  # 0 = never (META_API.md §3)
    data_access_expires_at: int
    kind: str = "short"  # short | long
    revoked_subcode: int | None = None  # 190 subcode served once revoked (460, 458, 467 ...)
    declined: list[str] = field(default_factory=list)
    page_id: str | None = None  # a Page token (sandbox/pages.py): acts for this Page


@dataclass
class AuthCode:
    value: str
    app_id: str
    redirect_uri: str
    user_id: str
    scopes: list[str]
    declined: list[str]
    created_at: float
    used: bool = False
    # PKCE (RFC 7636): the dialog's code_challenge binds the code to the verifier that made it.
    code_challenge: str | None = None
    code_challenge_method: str = "plain"


@dataclass
class OAuthConfig:
    """Knobs for Meta's inconsistent token endpoint (META_API.md §2)."""

    include_expires_in: bool = True
    refuse_exchange: bool = False  # fb_exchange_token answers with an error
    extend_on_exchange: bool = True  # False: the new token keeps the old token's expiry


SeedHook = Callable[["World"], Any]


class World:
    def __init__(self, seed_hooks: dict[str, SeedHook] | None = None) -> None:
        self.lock = threading.RLock()
        self._seed_hooks = dict(seed_hooks or {})
        self.reset()

    # -- lifecycle --------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.clock_offset = 0.0
            self.apps: dict[str, App] = {}
            self.users: dict[str, User] = {}
            self.tokens: dict[str, Token] = {}
            self.codes: dict[str, AuthCode] = {}
            self.oauth = OAuthConfig()
            self.exchange_counts: dict[str, int] = {}
            self.request_log: list[dict[str, Any]] = []
            self.areas: dict[str, Any] = {}
            self._seed()
            for name, hook in self._seed_hooks.items():
                self.areas[name] = hook(self)

    def _seed(self) -> None:
        self.apps[SEED_APP_ID] = App(SEED_APP_ID, SEED_APP_SECRET, "CRM Ventas Sandbox",
                                     redirect_patterns=list(LOCAL_CALLBACKS))
        self.apps[OTHER_APP_ID] = App(OTHER_APP_ID, OTHER_APP_SECRET, "Some Other App",
                                      redirect_patterns=list(LOCAL_CALLBACKS))
        self.users["10001"] = User("10001", "Ana Demo")
        self.users["10002"] = User("10002", "Bruno Demo")

    def add_seed_hook(self, name: str, hook: SeedHook) -> None:
        with self.lock:
            self._seed_hooks[name] = hook
            self.areas[name] = hook(self)

    def area(self, name: str) -> Any:
        """State an area attached through its seed hook."""
        return self.areas[name]

    # -- time -------------------------------------------------------------------------------
    def now(self) -> float:
        """Wall clock plus the offset tests add to expire codes and tokens without waiting."""
        return time.time() + self.clock_offset

    # -- tokens -----------------------------------------------------------------------------
    def issue_token(
        self,
        user_id: str,
        app_id: str = SEED_APP_ID,
        scopes: list[str] | None = None,
        *,
        kind: str = "short",
        expires_at: int | None = None,
        data_access_expires_at: int | None = None,
        declined: list[str] | None = None,
    ) -> Token:
        now = int(self.now())
        ttl = LONG_LIVED_SECONDS if kind == "long" else SHORT_LIVED_SECONDS
        token = Token(
            value="EAA" + secrets.token_urlsafe(48).replace("-", "x").replace("_", "y"),
            app_id=app_id,
            user_id=user_id,
            scopes=list(scopes if scopes is not None else ["public_profile"]),
            issued_at=now,
            expires_at=now + ttl if expires_at is None else expires_at,
            data_access_expires_at=(now + DATA_ACCESS_SECONDS if data_access_expires_at is None
                                    else data_access_expires_at),
            kind=kind,
            declined=list(declined or []),
        )
        with self.lock:
            self.tokens[token.value] = token
        return token

    def issue_code(self, app_id: str, redirect_uri: str, user_id: str, scopes: list[str],
                   declined: list[str], code_challenge: str | None = None,
                   code_challenge_method: str = "plain") -> AuthCode:
        code = AuthCode(secrets.token_urlsafe(96), app_id, redirect_uri, user_id, scopes,
                        declined, created_at=self.now(), code_challenge=code_challenge,
                        code_challenge_method=code_challenge_method)
        with self.lock:
            self.codes[code.value] = code
        return code

    def is_expired(self, token: Token) -> bool:
        return token.expires_at != 0 and token.expires_at <= self.now()

    def known_secrets(self) -> set[str]:
        """Values that must never appear in a URL: tokens, app secrets, codes."""
        with self.lock:
            return ({*self.tokens, *self.codes}
                    | {a.secret for a in self.apps.values()})
