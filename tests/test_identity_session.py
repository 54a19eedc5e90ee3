"""Agent session resolution, id validation, TTL parsing and the agent claims request (no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from azure_agent_mcp.identity import (
    SESSION_ENV,
    InvalidDurationError,
    InvalidSessionIdError,
    SessionExpiredError,
    parse_duration,
    resolve_session,
)
from azure_agent_mcp.identity.claims import (
    InvalidClaimsError,
    agent_claims,
    agent_markers,
    decode_challenge_claims,
    merge_claims,
    unverified_jwt_claims,
)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- precedence and origin ----------------------------------------------------------------------


def test_flag_beats_host_variable_and_is_written_back():
    environ = {SESSION_ENV: "from-host"}
    session = resolve_session(session_id="from-flag", environ=environ)
    assert (session.id, session.origin) == ("from-flag", "flag")
    assert environ[SESSION_ENV] == "from-flag"


def test_host_variable_is_used_when_no_flag():
    environ = {SESSION_ENV: "copilot-7f3a:chat.2"}
    session = resolve_session(environ=environ)
    assert (session.id, session.origin) == ("copilot-7f3a:chat.2", "host")


def test_generated_uuid_when_nothing_given_and_exported():
    environ: dict[str, str] = {}
    session = resolve_session(environ=environ)
    assert session.origin == "generated"
    assert len(session.id) == 36 and session.id.count("-") == 4
    assert environ[SESSION_ENV] == session.id
    assert resolve_session(environ={}).id != session.id


def test_empty_host_variable_counts_as_unset():
    environ = {SESSION_ENV: ""}
    session = resolve_session(environ=environ)
    assert session.origin == "generated" and environ[SESSION_ENV] == session.id


def test_default_environ_is_the_process_environment(monkeypatch):
    monkeypatch.delenv(SESSION_ENV, raising=False)
    session = resolve_session(session_id="proc-env-1")
    assert os.environ[SESSION_ENV] == "proc-env-1"
    child = subprocess.run(
        [sys.executable, "-c", f"import os; print(os.environ['{SESSION_ENV}'])"],
        capture_output=True, text=True, check=True,
    )
    assert child.stdout.strip() == session.id


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, says",
    [
        ("", "empty"),
        ("x" * 129, "129 characters"),
        ("has space", "' '"),
        ("semi;colon", "';'"),
        ("new\nline", "'\\n'"),
        ("ünïcode", "'ü'"),
        ("slash/path", "'/'"),
    ],
)
def test_bad_ids_are_refused_with_the_reason(bad, says):
    with pytest.raises(InvalidSessionIdError) as caught:
        resolve_session(session_id=bad, environ={})
    assert says in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_bad_host_variable_is_refused_and_named():
    with pytest.raises(InvalidSessionIdError, match=SESSION_ENV):
        resolve_session(environ={SESSION_ENV: "bad id"})


def test_limits_are_inclusive():
    assert resolve_session(session_id="x" * 128, environ={}).id == "x" * 128
    assert resolve_session(session_id="A.b_c:d-9", environ={}).id == "A.b_c:d-9"


def test_refused_id_is_not_exported():
    environ = {SESSION_ENV: "keep-me"}
    with pytest.raises(InvalidSessionIdError):
        resolve_session(session_id="no good", environ=environ)
    assert environ[SESSION_ENV] == "keep-me"


# -- durations and expiry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [("45m", 2700), ("8h", 28800), ("90s", 90), ("1d", 86400), ("0", 0), ("1h30m", 5400), ("3600", 3600),
     (" 2H ", 7200), (120, 120), (None, 0)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "-5m", "1h30", "m", "1.5h", "½h", "٣m", -1, True])
def test_parse_duration_refuses(text):
    with pytest.raises(InvalidDurationError):
        parse_duration(text)


def test_session_expires_and_explains():
    clock = Clock()
    session = resolve_session(session_id="ttl-1", ttl="45m", environ={}, clock=clock)
    assert session.expires_at == clock.now + 2700
    session.check()
    clock.now += 2699
    assert not session.expired and session.remaining() == 1
    clock.now += 1
    assert session.expired
    with pytest.raises(SessionExpiredError) as caught:
        session.check()
    message = str(caught.value)
    assert "ttl-1" in message and "expired at" in message
    assert "restart the server" in message and "--session-ttl" in message


def test_zero_ttl_never_expires():
    clock = Clock()
    session = resolve_session(session_id="forever", ttl="0", environ={}, clock=clock)
    clock.now += 10 * 365 * 86400
    assert session.expires_at is None and not session.expired and session.remaining() is None
    session.check()


def test_session_to_dict_is_json_safe():
    session = resolve_session(session_id="dict-1", ttl="1h", environ={}, clock=Clock(0))
    data = json.loads(json.dumps(session.to_dict()))
    assert data == {
        "id": "dict-1", "origin": "flag", "created_at": "1970-01-01T00:00:00Z",
        "expires_at": "1970-01-01T01:00:00Z", "expired": False,
    }


# -- claims ------------------------------------------------------------------------------------------


def test_agent_claims_profiles():
    assert json.loads(agent_claims("s-1")) == {"access_token": {"xms_cli_sid": {"values": ["s-1"]}}}
    assert json.loads(agent_claims("s-1", "xms_agent_session")) == {
        "access_token": {"xms_agent_session": {"essential": True, "value": "s-1"}}
    }
    with pytest.raises(InvalidClaimsError, match="xms_cli_sid"):
        agent_claims("s-1", "nope")


def test_merge_keeps_both_and_the_agent_tag_wins():
    agent = agent_claims("mine")
    challenge = json.dumps({"access_token": {"acrs": {"essential": True, "value": "c1"},
                                             "xms_cli_sid": {"values": ["someone-else"]}},
                            "id_token": {"auth_time": {"essential": True}}})
    merged = json.loads(merge_claims(agent, challenge))
    assert merged["access_token"]["acrs"] == {"essential": True, "value": "c1"}
    assert merged["access_token"]["xms_cli_sid"] == {"values": ["mine"]}
    assert merged["id_token"] == {"auth_time": {"essential": True}}
    assert merge_claims(agent, None) == agent
    with pytest.raises(InvalidClaimsError):
        merge_claims(agent, "[1, 2]")


def test_decode_challenge_claims():
    import base64

    raw = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'
    encoded = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    assert decode_challenge_claims(encoded) == raw
    with pytest.raises(InvalidClaimsError):
        decode_challenge_claims("!!!")


def test_unverified_claims_and_markers():
    import base64

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    token = f"{part({'alg': 'RS256'})}.{part({'oid': 'o', 'xms_cli_ses': 's', 'xms_act_fct': '3', 'x': 1})}.sig"
    claims = unverified_jwt_claims(token)
    assert claims["oid"] == "o"
    assert agent_markers(claims) == {"xms_cli_ses": "s", "xms_act_fct": "3"}
    assert unverified_jwt_claims("opaque-token") == {}
    assert unverified_jwt_claims("a.!!.c") == {}
