"""Local grants in isolation: the clock rule, what a grant lifts and for whom, one-shot tickets, request limits."""

from __future__ import annotations

from email.utils import format_datetime
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azure_agent_mcp.access.clock import GrantClock
from azure_agent_mcp.access.grants import Grant, GrantBook, Permit
from azure_agent_mcp.access.requests import AccessRequestError, check_request
from azure_agent_mcp.identity import AgentSession
from azure_agent_mcp.policy.effects import Decision, Effect
from azure_agent_mcp.policy.elevation import Elevation

RG = "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg-prod-app"
SITE = RG + "/providers/Microsoft.Web/sites/app-orders-prod"
OTHER = RG + "/providers/Microsoft.Web/sites/app-orders-staging"
RESTART = "Microsoft.Web/sites/restart/action"
T0 = 1_900_000_000.0


class Tick:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _http_date(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, tz=timezone.utc), usegmt=True)


def _denied(operation: str = RESTART, scope: str = SITE, rule: str = "no Actions pattern matches") -> Decision:
    return Decision(Effect.DENY, operation, scope, False, rule, "p.json", "refused")


def _book(wall: Tick, mono: Tick | None = None) -> GrantBook:
    return GrantBook(GrantClock(wall=wall, monotonic=mono or Tick(0.0)))


def _grant(book: GrantBook, session: str = "s1", scope: str = SITE, ops: tuple[str, ...] = (RESTART,),
           seconds: float = 600) -> Grant:
    now = book.clock.now()
    grant = Grant(f"g-{session}-{len(book.active(session))}", session, scope, now, now + seconds, "why", ops)
    book.add(grant)
    return grant


# -- the clock rule ---------------------------------------------------------------------------------


def test_a_late_local_clock_cannot_extend_a_grant_azure_has_ended():
    wall, mono = Tick(), Tick(100.0)
    book = _book(wall, mono)
    grant = _grant(book)
    wall.now = T0 - 3600  # the local clock is set back an hour
    book.clock.observe(_http_date(T0 + 601))  # Azure says the grant's end has passed
    assert book.covering("s1", RESTART, SITE, False) is None
    assert grant.id not in [g.id for g in book.active("s1")]


def test_azure_time_runs_on_with_the_monotonic_clock_and_never_back():
    wall, mono = Tick(T0 - 10_000), Tick(100.0)
    clock = GrantClock(wall=wall, monotonic=mono)
    clock.observe(_http_date(T0))
    mono.now += 30
    assert clock.now() == pytest.approx(T0 + 30)
    clock.observe(_http_date(T0 - 500))  # a stale answer does not move time back
    assert clock.now() == pytest.approx(T0 + 30)
    clock.observe("not a date")
    assert clock.now() == pytest.approx(T0 + 30)


def test_a_grant_stops_applying_exactly_at_its_end_and_its_expiry_is_audited():
    wall = Tick()
    records: list[dict] = []

    class Audit:
        def append(self, record: dict, durable: bool = True) -> dict:
            records.append(record)
            return record

    book = GrantBook(GrantClock(wall=wall, monotonic=Tick(0.0)), Audit())
    grant = _grant(book, seconds=600)
    wall.now = grant.end - 0.001
    assert book.widen("s1", _denied())[1] == grant
    wall.now = grant.end
    decision, used = book.widen("s1", _denied())
    assert used is None and decision.effect is Effect.DENY
    assert [(r["event"], r["grant_id"]) for r in records] == [("expired", grant.id)]


# -- what a grant lifts, and for whom -----------------------------------------------------------------


def test_a_grant_lifts_only_its_operation_at_its_scope_in_its_session():
    book = _book(Tick())
    grant = _grant(book)
    allowed, used = book.widen("s1", _denied())
    assert used == grant and allowed.effect is Effect.ALLOW and grant.id in allowed.rule
    assert book.widen("s1", _denied(scope=SITE + "/slots/staging"))[1] == grant  # below the scope: covered
    assert book.widen("s1", _denied(scope=OTHER))[1] is None  # scope B
    assert book.widen("s1", _denied(scope=RG))[1] is None  # above the scope
    assert book.widen("s1", _denied(operation="Microsoft.Web/sites/stop/action"))[1] is None  # op Y
    assert book.widen("s2", _denied())[1] is None  # another session
    assert book.widen(None, _denied())[1] is None


@pytest.mark.parametrize("rule", [
    "Deny: Microsoft.Web/sites/config/list/action (secret-bearing catalog)",
    "outside AssignableScopes [/subscriptions/x]",
    "unknown_operation",
    "unmappable request",
    "unreadable request body",
])
def test_a_grant_never_lifts_a_deny_an_assignable_scope_or_an_unknown_operation(rule):
    book = _book(Tick())
    _grant(book, ops=("*",))
    decision, used = book.widen("s1", _denied(rule=rule))
    assert used is None and decision.effect is Effect.DENY


@settings(max_examples=200, deadline=None)
@given(session=st.sampled_from(["s1", "s2", "s3"]),
       operation=st.sampled_from([RESTART, "Microsoft.Web/sites/stop/action", "Microsoft.Web/sites/write",
                                  "Microsoft.Web/sites/restart/actionx"]),
       scope=st.sampled_from([SITE, OTHER, RG, SITE + "/slots/a", SITE + "x", "/"]),
       later=st.floats(min_value=0, max_value=1200))
def test_property_a_grant_applies_iff_same_session_operation_scope_and_time(session, operation, scope, later):
    wall = Tick()
    book = _book(wall)
    grant = _grant(book)
    wall.now = T0 + later
    used = book.widen(session, _denied(operation=operation, scope=scope))[1]
    inside = scope == SITE or scope.startswith(SITE + "/")
    assert (used is not None) == (session == "s1" and operation == RESTART and inside and T0 + later < grant.end)


# -- one-shot tickets ------------------------------------------------------------------------------


def test_an_approval_counts_once():
    book = _book(Tick())
    asked = book.pending("s1", "digest", 600)
    assert book.pending("s1", "digest", 600) is asked  # the same question on every round until answered
    assert book.take_pending("s1", "digest") is asked
    assert book.take_pending("s1", "digest") is None  # replayed: nothing
    assert book.take_pending("s2", "digest") is None


def test_a_pim_permit_is_for_exactly_one_request_of_one_session_and_tool():
    book = _book(Tick())
    body = {"properties": {"requestType": "SelfActivate", "principalId": "p"}}
    url = "https://arm.example/x/roleAssignmentScheduleRequests/1?api-version=2020-10-01"
    book.permit(Permit("g-1", "s1", "access_request", "PUT", url, body, "activation"))
    assert book.take_permit("s1", "arm_request", "PUT", url, '{"properties": {"requestType": "SelfActivate", "principalId": "p"}}') is None
    assert book.take_permit("s2", "access_request", "PUT", url, body) is None
    assert book.take_permit("s1", "access_request", "PUT", url, {"properties": {"requestType": "AdminAssign"}}) is None
    assert book.take_permit("s1", "access_request", "PUT", url + "x", body) is None
    assert book.take_permit("s1", "access_request", "PUT", url, '{"properties": {"principalId": "p", "requestType": "SelfActivate"}}')
    assert book.take_permit("s1", "access_request", "PUT", url, body) is None  # used once


# -- request limits ----------------------------------------------------------------------------------

ELEVATION = Elevation(3600, ("Website Contributor",), (RESTART,), (RG,))


def _session(ttl: float | None = 8 * 3600) -> AgentSession:
    now = 1_900_000_000.0
    return AgentSession(id="s1", origin="test", created_at=now, expires_at=now + ttl if ttl else None, clock=lambda: now)


def _check(book: GrantBook | None = None, session: AgentSession | None = None, elevation=ELEVATION, **args):
    request = {"operations": [RESTART], "scope": SITE, "duration": "PT10M", "justification": "restart after deploy"}
    request.update(args)
    request = {k: v for k, v in request.items() if v is not None}
    return check_request(elevation, session or _session(), book or _book(Tick()), **request)


@pytest.mark.parametrize(("args", "words"), [
    ({"duration": "PT2H"}, "over the policy's Elevation MaxDuration PT1H"),
    ({"duration": "ten minutes"}, "not an ISO 8601 duration"),
    ({"scope": RG.replace("rg-prod-app", "rg-other")}, "outside the policy's Elevation Scopes"),
    ({"operations": ["Microsoft.Web/sites/write"]}, "outside the policy's Elevation Operations"),
    ({"operations": ["Microsoft.Web/sites/*"]}, "no wildcards"),
    ({"operations": None, "role": "Owner"}, "not in the policy's Elevation Roles"),
    ({"role": "Website Contributor"}, "not both"),
    ({"justification": "  "}, "justification is missing"),
    ({"justification": "x" * 501}, "501 characters, over the limit of 500"),
])
def test_bad_requests_are_refused_naming_the_limit(args, words):
    with pytest.raises(AccessRequestError, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        _check(**args)


def test_no_elevation_block_no_request():
    with pytest.raises(AccessRequestError, match="no Elevation block"):
        _check(elevation=None)


def test_a_grant_never_outlives_its_session():
    with pytest.raises(AccessRequestError, match=r"expires at .* before a grant of PT10M would end") as caught:
        _check(session=_session(ttl=100))
    assert "Start a new agent session" in caught.value.hint
    with pytest.raises(AccessRequestError, match="before a grant of PT10M would end") as caught:
        _check(session=_session(ttl=300))
    assert "PT4M or less" in caught.value.hint
    with pytest.raises(AccessRequestError, match="never outlives") as caught:
        _check(session=_session(ttl=1900), duration="PT1H")
    assert "PT30M or less" in caught.value.hint
    assert _check(session=_session(ttl=1900), duration="PT30M").seconds == 1800


def test_overlapping_requests_are_refused():
    book = _book(Tick())
    grant = _grant(book, scope=SITE)
    with pytest.raises(AccessRequestError, match=f"overlaps grant {grant.id}"):
        _check(book=book)
    with pytest.raises(AccessRequestError, match="overlaps"):
        _check(book=book, scope=RG)  # a scope above it, the same operation
    assert _check(book=book, scope=OTHER).scope == OTHER  # a sibling does not overlap


def test_closing_the_book_ends_every_grant_and_audits_it():
    wall = Tick()
    records: list[dict] = []

    class Audit:
        def append(self, record: dict, durable: bool = True) -> dict:
            records.append(record)
            return record

    book = GrantBook(GrantClock(wall=wall, monotonic=Tick(0.0)), Audit())
    short = _grant(book, seconds=60)
    long = _grant(book, session="s2", seconds=600)
    wall.now += 120
    book.close()
    assert sorted((r["event"], r["grant_id"]) for r in records) == sorted([("expired", short.id), ("ended", long.id)])
    assert book.widen("s2", _denied())[1] is None
