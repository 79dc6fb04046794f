"""Bearer-token auth: HS256 JWTs carrying scopes.

Scopes: ``agent``, ``supervisor``, ``admin``, ``integrator``, ``switch`` and ``service``
(service-to-service calls). ``admin`` passes every scope check. Every route except
``/health``, ``/ready`` and ``/metrics`` declares the scopes it accepts with :func:`require`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt
from fastapi import HTTPException, Request, Security, WebSocket, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import Forbidden
from shared.input_guard import character_problem
from shared.limits import MAX_SUBJECT, MAX_TEAM
from shared.settings import CommonSettings

SCOPES = ("agent", "supervisor", "admin", "integrator", "switch", "service")
# Scopes that act for someone else: a supervisor over agents, a service for the caller's own
# channels, an admin for anyone. A token with none of them acts only for its own subject.
ACTS_FOR_OTHERS = frozenset({"supervisor", "service", "admin"})
# Scopes that oversee every agent whatever a token says of teams.
FLOOR_WIDE = frozenset({"service", "admin"})
ISSUER = "hotline"
# A token for every service of the suite (the softswitch, the CLI); a narrower one names them.
SUITE_AUDIENCE = "hotline"
MAX_TOKEN_LIFETIME_SECONDS = 31 * 24 * 3600
DEV_KEY_FILE = "dev-signing-key"
# A media grant is presented when the agent answers, so it need not outlive a long ring; the
# stream is authorized once, at connect, and may then run for hours.
MEDIA_GRANT_TTL_SECONDS = 3600


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    # What an integrator token may read beyond masked records (``shared.data_scope``).
    grants: frozenset[str] = frozenset()
    # A supervisor's part of the floor: the agents of this team, or of this department. A
    # supervisor token naming neither oversees the whole floor (a duty manager's).
    team: str | None = None
    department: str | None = None
    # A media grant (:meth:`Auth.mint_media_grant`): the one call whose audio this switch
    # token may stream. None on every other token.
    call_id: str | None = None

    @property
    def acts_for_others(self) -> bool:
        return bool(self.scopes & ACTS_FOR_OTHERS)

    @property
    def oversees_part(self) -> bool:
        """A supervisor whose token names a team or a department: not the whole floor."""
        return ("supervisor" in self.scopes and not self.scopes & FLOOR_WIDE
                and (self.team is not None or self.department is not None))

    @property
    def oversight(self) -> str:
        """The part of the floor this principal directs, in words (for refusals)."""
        if self.oversees_part:
            return " and ".join(f"{kind} {name!r}" for kind, name in
                                (("team", self.team), ("department", self.department)) if name)
        return "the whole floor" if self.acts_for_others else "only itself"

    def oversees(self, team: str | None, department: str | None) -> bool:
        """Whether this principal directs and reads the agents of ``team`` in ``department``:
        admin and service tokens everyone; a supervisor token its team's or department's
        agents, or everyone when it names neither; any other token no one (but itself)."""
        if self.oversees_part:
            return ((self.team is not None and team == self.team)
                    or (self.department is not None and department == self.department))
        return self.acts_for_others

    def check_directs(self, agent_id: str, team: str | None, department: str | None) -> None:
        """403 unless this principal is the agent itself or oversees the agent's team."""
        if agent_id == self.subject and "agent" in self.scopes:
            return
        if not self.oversees(team, department):
            raise Forbidden(f"{self.subject!r} oversees {self.oversight}; agent {agent_id!r} "
                            f"is in team {team!r}, department {department!r}")

    def agent_acted_for(self, named: str | None) -> str | None:
        """The agent this principal acts for when a request names ``named``: an agent token
        acts for its own subject (naming another agent is refused with 403); a supervisor,
        service or admin acts for whoever is named."""
        if self.acts_for_others:
            return named
        if named is not None and named != self.subject:
            raise Forbidden(f"an agent token acts only for its own agent {self.subject!r}, "
                            f"not {named!r}")
        return self.subject


def key_id(secret: str) -> str:
    """A signing key's public name (``kid``): tells which key signed a token without
    revealing it, so a key can be rotated while tokens signed by the old one still work."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


class Auth:
    """Mints tokens with the current key and verifies them against it or an earlier one.

    A token names its audience (``aud``): the services it is for, or ``hotline`` for the
    whole suite; a service accepts only tokens for it or for the suite. No token lives longer
    than ``max_lifetime_seconds`` (checked on ``exp - iat``, whoever minted it)."""

    def __init__(self, secret: str, *, previous: tuple[str, ...] = (),
                 audience: str = SUITE_AUDIENCE,
                 max_lifetime_seconds: int = MAX_TOKEN_LIFETIME_SECONDS) -> None:
        for key in (secret, *previous):
            if len(key) < 32:
                raise ValueError("a signing secret must be at least 32 characters")
        self._secret = secret
        self._kid = key_id(secret)
        self._keys = {key_id(key): key for key in (*previous, secret)}
        self.audience = audience
        self.max_lifetime_seconds = max_lifetime_seconds

    def mint(self, subject: str, scopes: list[str] | tuple[str, ...], *,
             ttl_seconds: int = 12 * 3600, grants: tuple[str, ...] = (),
             audience: str | tuple[str, ...] = SUITE_AUDIENCE, team: str | None = None,
             department: str | None = None, call_id: str | None = None) -> str:
        unknown = set(scopes) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes: {sorted(unknown)}")
        if not 0 < ttl_seconds <= self.max_lifetime_seconds:
            raise ValueError(f"a token lives at most {self.max_lifetime_seconds} s")
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": ISSUER, "sub": subject, "scope": " ".join(scopes), "iat": now,
            "exp": now + ttl_seconds,
            "aud": audience if isinstance(audience, str) else list(audience)}
        if grants:
            claims["grants"] = " ".join(grants)
        for claim, value in (("team", team), ("department", department), ("call", call_id)):
            if value is not None:
                if not _is_short_name(value):
                    raise ValueError(f"{claim} must be 1 to {MAX_TEAM} printable characters")
                claims[claim] = value
        return jwt.encode(claims, self._secret, algorithm="HS256",
                          headers={"kid": self._kid})

    def verify(self, token: str) -> Principal:
        kid = jwt.get_unverified_header(token).get("kid")
        key = self._keys.get(kid) if kid is not None else self._secret
        if key is None:
            raise jwt.InvalidTokenError("signed with a key this service does not hold")
        claims = jwt.decode(token, key, algorithms=["HS256"], issuer=ISSUER,
                            audience=[self.audience, SUITE_AUDIENCE],
                            options={"require": ["exp", "iat", "sub", "iss", "aud"]})
        if claims["exp"] - claims["iat"] > self.max_lifetime_seconds:
            raise jwt.InvalidTokenError(
                f"the token lives longer than {self.max_lifetime_seconds} s")
        subject = claims["sub"]
        # The subject is stored as the actor of whatever the token does.
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT \
                or character_problem(subject) is not None:
            raise jwt.InvalidTokenError(f"sub must be 1 to {MAX_SUBJECT} printable characters")
        for claim in ("team", "department", "call"):
            if claim in claims and not _is_short_name(claims[claim]):
                raise jwt.InvalidTokenError(
                    f"{claim} must be 1 to {MAX_TEAM} printable characters")
        return Principal(subject, frozenset(str(claims.get("scope", "")).split()),
                         frozenset(str(claims.get("grants", "")).split()),
                         team=claims.get("team"), department=claims.get("department"),
                         call_id=claims.get("call"))

    def mint_media_grant(self, switch: str, call_id: str) -> str:
        """What CTI hands the switch with an agent leg's INVITE: a ``switch`` token for
        recording that names the one call whose media it may stream, so a switch cannot
        open (and so pre-empt) the recording of a call it does not carry."""
        return self.mint(switch, ["switch"], ttl_seconds=min(
            MEDIA_GRANT_TTL_SECONDS, self.max_lifetime_seconds), audience="recording",
            call_id=call_id)


def _is_short_name(value: object) -> bool:
    """A team, a department (as the agents' records hold them) or a call id: 1 to 64
    printable characters."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_TEAM
            and character_problem(value) is None)


# Secrets that have been published (an example, an old compose default): anyone can mint
# admin tokens with them.
PUBLISHED_SECRETS = frozenset({"change-me-change-me-change-me-change-me"})


def signing_secret(common: CommonSettings) -> str:
    """``HOTLINE_JWT_SECRET`` if set; otherwise the development key in the var dir, created on
    first use, which is how ``hotline`` CLI commands find the key ``make run`` uses. A
    published secret is refused unless ``HOTLINE_DEVELOPMENT`` says this is a throwaway."""
    if common.jwt_secret:
        published = (common.jwt_secret in PUBLISHED_SECRETS
                     or "change-me" in common.jwt_secret.lower())
        if published and not common.development:
            raise ValueError("HOTLINE_JWT_SECRET is a published example: set a random secret "
                             "(or HOTLINE_DEVELOPMENT=true for a throwaway stack)")
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


BEARER = HTTPBearer(auto_error=False, description="A JWT minted by the suite's key "
                    "(`hotline token -s <scope>`); its scopes decide what it may call "
                    "(docs/access.yaml).")


class RequireScopes:
    """FastAPI dependency: the request carries a valid token with one of ``scopes``."""

    def __init__(self, *scopes: str) -> None:
        unknown = set(scopes) - set(SCOPES)
        if unknown or not scopes:
            raise ValueError(f"bad scopes {scopes}")
        self.scopes = frozenset(scopes)

    async def __call__(self, request: Request,
                       _: HTTPAuthorizationCredentials | None = Security(BEARER)) -> Principal:
        # ``BEARER`` only declares the scheme in the OpenAPI document (an Authorize button
        # in /docs); the token is read here, from the header or ``?access_token=``.
        auth: Auth = request.app.state.auth
        try:
            return authorize(auth, _token_from(request.headers, request.query_params), self.scopes)
        except AuthError as error:
            headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
            raise HTTPException(error.status_code, error.detail, headers=headers) from None


class RequireSelf(RequireScopes):
    """:class:`RequireScopes`, and an agent token acts only for the agent its path names
    (``/agents/{agent_id}/...``): another agent's id is refused with 403."""

    def __init__(self, *scopes: str, param: str = "agent_id") -> None:
        super().__init__(*scopes)
        self.param = param

    async def __call__(self, request: Request,
                       credentials: HTTPAuthorizationCredentials | None = Security(BEARER)
                       ) -> Principal:
        principal = await super().__call__(request, credentials)
        try:
            principal.agent_acted_for(request.path_params.get(self.param))
        except Forbidden as refused:
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(refused)) from None
        return principal


def require(*scopes: str) -> RequireScopes:
    return RequireScopes(*scopes)


def require_self(*scopes: str, param: str = "agent_id") -> RequireSelf:
    return RequireSelf(*scopes, param=param)


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
