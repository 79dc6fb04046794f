"""Who a token acts for, the subjects it may carry, and the secrets a service refuses."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from shared.auth import Auth, Principal, signing_secret
from shared.errors import Forbidden
from shared.service import ServiceToken
from shared.settings import CommonSettings

SECRET = "s" * 40
OLD = "o" * 40


def hand_made(secret: str = SECRET, headers: dict[str, str] | None = None,
              **claims: object) -> str:
    """A token as another issuer would write it (the claims given override a good one's)."""
    now = int(time.time())
    body = {"iss": "hotline", "sub": "x", "scope": "admin", "iat": now, "exp": now + 60,
            "aud": "hotline", **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret,
                      algorithm="HS256", headers=headers)


@pytest.mark.parametrize(("scopes", "named", "acts_for"), [
    ({"agent"}, None, "A001"),  # an agent acts as itself when nobody is named
    ({"agent"}, "A001", "A001"),
    ({"agent", "integrator"}, "A001", "A001"),
    ({"supervisor"}, "A002", "A002"),  # a supervisor acts for whoever is named
    ({"supervisor"}, None, None),
    ({"service"}, "A002", "A002"),
    ({"admin"}, "A002", "A002"),
    ({"agent", "supervisor"}, "A002", "A002"),
])
def test_the_agent_a_principal_acts_for(scopes: set[str], named: str | None,
                                        acts_for: str | None) -> None:
    assert Principal("A001", frozenset(scopes)).agent_acted_for(named) == acts_for


@pytest.mark.parametrize("scopes", [{"agent"}, {"agent", "integrator"}, {"integrator"}])
def test_an_agent_token_never_acts_for_another_agent(scopes: set[str]) -> None:
    with pytest.raises(Forbidden, match="A002"):
        Principal("A001", frozenset(scopes)).agent_acted_for("A002")


@pytest.mark.parametrize(("scopes", "team", "department", "agent_in", "oversees"), [
    ({"supervisor"}, "T1", None, ("T1", "D1"), True),
    ({"supervisor"}, "T1", None, ("T2", "D1"), False),
    ({"supervisor"}, None, "D1", ("T2", "D1"), True),
    ({"supervisor"}, None, "D1", ("T1", "D2"), False),
    ({"supervisor"}, "T1", "D2", ("T1", "D1"), True),   # either claim is enough
    ({"supervisor"}, None, None, ("T9", "D9"), True),   # a duty manager: the whole floor
    ({"supervisor"}, "T1", None, (None, None), False),  # an agent of no team is not T1's
    ({"admin"}, "T1", None, ("T2", "D2"), True),        # admin and service: everyone
    ({"service"}, None, None, ("T2", "D2"), True),
    ({"agent"}, None, None, ("T1", "D1"), False),
    ({"integrator"}, None, None, ("T1", "D1"), False),
])
def test_who_oversees_an_agents_team(scopes: set[str], team: str | None,
                                     department: str | None,
                                     agent_in: tuple[str | None, str | None],
                                     oversees: bool) -> None:
    principal = Principal("S1", frozenset(scopes), team=team, department=department)
    assert principal.oversees(*agent_in) is oversees
    if oversees:
        principal.check_directs("A001", *agent_in)
    else:
        with pytest.raises(Forbidden, match="A001"):
            principal.check_directs("A001", *agent_in)
    # An agent always directs itself (ready, not ready, its wrap-up).
    Principal("A001", frozenset({"agent"})).check_directs("A001", *agent_in)


def test_a_supervisors_team_and_department_ride_in_its_token() -> None:
    auth = Auth(SECRET)
    principal = auth.verify(auth.mint("S1", ["supervisor"], team="T1", department="D1"))
    assert (principal.team, principal.department) == ("T1", "D1")
    assert principal.oversight == "team 'T1' and department 'D1'"
    assert auth.verify(auth.mint("S2", ["supervisor"])).oversight == "the whole floor"
    for bad in ("", "x" * 65, "a\u0000b", 7):
        with pytest.raises(jwt.InvalidTokenError, match="team"):
            auth.verify(hand_made(team=bad))
    with pytest.raises(ValueError, match="department"):
        auth.mint("S3", ["supervisor"], department="x" * 65)


def test_a_media_grant_names_its_switch_and_call_and_is_for_recording_only() -> None:
    grant = Auth(SECRET).mint_media_grant("sw-east", "C1")
    principal = Auth(SECRET, audience="recording").verify(grant)
    assert (principal.subject, principal.scopes, principal.call_id) == (
        "sw-east", frozenset({"switch"}), "C1")
    assert Auth(SECRET).verify(Auth(SECRET).mint("sw", ["switch"])).call_id is None
    with pytest.raises(jwt.InvalidAudienceError):
        Auth(SECRET, audience="cti_gateway").verify(grant)
    with pytest.raises(jwt.InvalidTokenError, match="call"):
        Auth(SECRET).verify(hand_made(call="a\u0000b"))


@pytest.mark.parametrize("subject", ["x" * 129, "a\u0000b", "a\ud800b"])
def test_a_subject_that_cannot_be_stored_as_an_actor_is_refused(subject: str) -> None:
    auth = Auth(SECRET)
    token = hand_made(sub=subject)
    with pytest.raises(jwt.InvalidTokenError, match="sub"):
        auth.verify(token)
    assert auth.verify(auth.mint("x" * 128, ["admin"])).subject == "x" * 128


@pytest.mark.parametrize(("secret", "development", "refused"), [
    ("change-me-change-me-change-me-change-me", False, True),
    ("change-me-change-me-change-me-change-me", True, False),
    ("please-CHANGE-ME-before-going-live-0123", False, True),
    ("9f1c2e7a4b6d8e0f1a3c5e7b9d1f3a5c", False, False),
])
def test_a_published_secret_is_refused_outside_development(secret: str, development: bool,
                                                           refused: bool, tmp_path) -> None:
    common = CommonSettings(jwt_secret=secret, development=development, var_dir=tmp_path)
    if refused:
        with pytest.raises(ValueError, match="published"):
            signing_secret(common)
    else:
        assert signing_secret(common) == secret


def test_a_rotated_key_still_verifies_what_it_signed_until_it_expires() -> None:
    old = Auth(OLD)
    rotated = Auth(SECRET, previous=(OLD,))
    assert rotated.verify(old.mint("a1", ["agent"])).subject == "a1"
    assert rotated.verify(rotated.mint("a2", ["agent"])).subject == "a2"
    with pytest.raises(jwt.InvalidTokenError, match="key"):
        Auth(SECRET).verify(old.mint("a1", ["agent"]))  # the old key was dropped
    with pytest.raises(jwt.InvalidTokenError):
        rotated.verify(hand_made(OLD))  # no kid: only the current key is tried


@pytest.mark.parametrize(("audience", "service", "accepted"), [
    ("hotline", "recording", True),
    ("recording", "recording", True),
    (("recording", "workorder"), "workorder", True),
    ("recording", "cti_gateway", False),
])
def test_a_token_is_accepted_only_by_the_services_it_names(
        audience: str | tuple[str, ...], service: str, accepted: bool) -> None:
    token = Auth(SECRET).mint("bi", ["integrator"], audience=audience)
    if accepted:
        assert Auth(SECRET, audience=service).verify(token).subject == "bi"
    else:
        with pytest.raises(jwt.InvalidAudienceError):
            Auth(SECRET, audience=service).verify(token)


@pytest.mark.parametrize(("claims", "why"), [
    ({"aud": None}, "aud"),
    ({"iat": None}, "iat"),
    ({"exp": int(time.time()) + 100 * 365 * 86400}, "longer"),  # a 100-year token
])
def test_tokens_without_an_audience_or_a_bounded_lifetime_are_refused(
        claims: dict[str, object], why: str) -> None:
    with pytest.raises(jwt.InvalidTokenError, match=why):
        Auth(SECRET).verify(hand_made(**claims))


def test_nobody_mints_a_token_past_the_maximum_lifetime() -> None:
    auth = Auth(SECRET, max_lifetime_seconds=3600)
    with pytest.raises(ValueError, match="at most"):
        auth.mint("x", ["admin"], ttl_seconds=3601)
    assert auth.verify(auth.mint("x", ["admin"], ttl_seconds=3600)).subject == "x"


def test_a_service_token_is_minted_again_before_it_expires(monkeypatch) -> None:
    auth = Auth(SECRET, max_lifetime_seconds=600)
    flow_auth = ServiceToken(auth, "workorder")
    clock = [0.0]
    wall = time.time()
    monkeypatch.setattr("shared.service.time.monotonic", lambda: clock[0])
    monkeypatch.setattr("shared.auth.time.time", lambda: wall + clock[0])

    def header() -> str:
        request = httpx.Request("GET", "http://peer/v1/x")
        return str(next(flow_auth.auth_flow(request)).headers["Authorization"])

    first = header()
    assert auth.verify(first.removeprefix("Bearer ")).scopes == {"service"}
    clock[0] += 299
    assert header() == first
    clock[0] += 2  # past half of the 600 s the suite allows
    assert header() != first


def test_a_call_made_with_another_token_keeps_it() -> None:
    request = httpx.Request("GET", "http://peer/v1/x", headers={"Authorization": "Bearer mine"})
    sent = next(ServiceToken(Auth(SECRET), "softswitch").auth_flow(request))
    assert sent.headers["Authorization"] == "Bearer mine"
