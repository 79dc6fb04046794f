"""Who a token acts for, the subjects it may carry, and the secrets a service refuses."""

from __future__ import annotations

import jwt
import pytest

from shared.auth import Auth, Principal, signing_secret
from shared.errors import Forbidden
from shared.settings import CommonSettings

SECRET = "s" * 40


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


@pytest.mark.parametrize("subject", ["x" * 129, "a\u0000b", "a\ud800b"])
def test_a_subject_that_cannot_be_stored_as_an_actor_is_refused(subject: str) -> None:
    auth = Auth(SECRET)
    token = jwt.encode({"iss": "hotline", "sub": subject, "scope": "admin", "exp": 2 ** 40},
                       SECRET, algorithm="HS256")
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
