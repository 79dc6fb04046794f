"""Bearer-token auth: HS256 JWTs carrying scopes.

Scopes: ``agent``, ``supervisor``, ``admin``, ``integrator``, ``switch`` and ``service``
(service-to-service calls). ``admin`` passes every scope check. Every route except
``/health``, ``/ready`` and ``/metrics`` declares the scopes it accepts with :func:`require`.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt
from fastapi import HTTPException, Request, WebSocket, status

from shared.settings import CommonSettings

SCOPES = ("agent", "supervisor", "admin", "integrator", "switch", "service")
ISSUER = "hotline"
DEV_KEY_FILE = "dev-signing-key"


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]


class Auth:
    def __init__(self, secret: str) -> None:
        if len(secret) < 32:
            raise ValueError("the signing secret must be at least 32 characters")
        self._secret = secret

    def mint(self, subject: str, scopes: list[str] | tuple[str, ...], *,
             ttl_seconds: int = 12 * 3600) -> str:
        unknown = set(scopes) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes: {sorted(unknown)}")
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": subject, "scope": " ".join(scopes),
                  "iat": now, "exp": now + ttl_seconds}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        claims = jwt.decode(token, self._secret, algorithms=["HS256"], issuer=ISSUER,
                            options={"require": ["exp", "sub", "iss"]})
        return Principal(claims["sub"], frozenset(str(claims.get("scope", "")).split()))


def signing_secret(common: CommonSettings) -> str:
    """``HOTLINE_JWT_SECRET`` if set; otherwise the development key in the var dir, created on
    first use, which is how ``hotline`` CLI commands find the key ``make run`` uses."""
    if common.jwt_secret:
        return common.jwt_secret
    path = Path(common.var_dir) / DEV_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Create atomically with owner-only permissions; a concurrent creator wins harmlessly.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
    return path.read_text().strip()


def _token_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """Bearer header first; ``?access_token=`` for clients (browsers' WebSocket) that cannot
    set headers."""
    header = headers.get("authorization")
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return query.get("access_token") or None


class AuthError(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        self.status_code = status_code
        self.detail = detail


def authorize(auth: Auth, token: str | None, scopes: frozenset[str]) -> Principal:
    if not token:
        raise AuthError(status.HTTP_401_UNAUTHORIZED, "missing bearer token")
    try:
        principal = auth.verify(token)
    except jwt.PyJWTError as error:
        raise AuthError(status.HTTP_401_UNAUTHORIZED, f"invalid token: {error}") from error
    if "admin" not in principal.scopes and not (principal.scopes & scopes):
        raise AuthError(status.HTTP_403_FORBIDDEN,
                        f"token lacks a required scope (one of: {', '.join(sorted(scopes))})")
    return principal


class RequireScopes:
    """FastAPI dependency: the request carries a valid token with one of ``scopes``."""

    def __init__(self, *scopes: str) -> None:
        unknown = set(scopes) - set(SCOPES)
        if unknown or not scopes:
            raise ValueError(f"bad scopes {scopes}")
        self.scopes = frozenset(scopes)

    async def __call__(self, request: Request) -> Principal:
        auth: Auth = request.app.state.auth
        try:
            return authorize(auth, _token_from(request.headers, request.query_params), self.scopes)
        except AuthError as error:
            headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
            raise HTTPException(error.status_code, error.detail, headers=headers) from None


def require(*scopes: str) -> RequireScopes:
    return RequireScopes(*scopes)


# WebSocket close codes for refused credentials (4000-4999 is for applications).
WS_UNAUTHORIZED = 4401
WS_FORBIDDEN = 4403


async def authorize_websocket(websocket: WebSocket, *scopes: str) -> Principal | None:
    """Check a WebSocket's token before accepting it; on refusal close it and return None."""
    auth: Auth = websocket.app.state.auth
    try:
        return authorize(auth, _token_from(websocket.headers, websocket.query_params),
                         frozenset(scopes))
    except AuthError as error:
        code = WS_UNAUTHORIZED if error.status_code == 401 else WS_FORBIDDEN
        await websocket.close(code=code, reason=error.detail[:120])
        return None
