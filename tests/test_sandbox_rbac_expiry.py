"""The sandbox's RBAC and time-bound assignments: remembered answers never outlive the assignment behind them.

The authorizer remembers decisions; a time-bound assignment must still stop granting exactly at its
end (and start exactly at its start) whatever was asked before. Hypothesis drives random schedules
and random questions at moving times against a recomputation from scratch.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from azure_agent_mcp.sandbox.rbac import READER, WEBSITE_CONTRIBUTOR, Authorizer, RoleAssignment

PRINCIPAL = "p-1"
SCOPES = ("/subscriptions/s", "/subscriptions/s/resourceGroups/g", "/subscriptions/s/resourceGroups/g/providers/"
          "Microsoft.Web/sites/w")
OPERATIONS = ("Microsoft.Web/sites/restart/action", "Microsoft.Web/sites/read", "Microsoft.Storage/storageAccounts/"
              "listKeys/action")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _assignment(index: int, role: str, scope: str, start: float | None, end: float | None) -> RoleAssignment:
    return RoleAssignment(f"a-{index}", PRINCIPAL, "User", role, scope, start=start, end=end)


bounds = st.one_of(st.none(), st.integers(0, 100).map(float))
assignments = st.lists(st.tuples(st.sampled_from((READER, WEBSITE_CONTRIBUTOR)), st.sampled_from(SCOPES), bounds,
                                 bounds), max_size=5)
questions = st.lists(st.tuples(st.integers(0, 120).map(float), st.sampled_from(OPERATIONS),
                               st.sampled_from(SCOPES)), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(assignments, questions)
def test_cached_answers_equal_a_fresh_evaluation_at_every_moment(specs, asked):
    clock = Clock()
    made = [_assignment(i, role, scope, start, end) for i, (role, scope, start, end) in enumerate(specs)]
    authorizer = Authorizer(made, clock=clock)
    for moment, operation, scope in sorted(asked, key=lambda q: q[0]):
        clock.now = moment
        fresh = Authorizer(made, clock=clock).allowed(PRINCIPAL, operation, scope)
        assert authorizer.allowed(PRINCIPAL, operation, scope) == fresh, (moment, operation, scope)
        assert authorizer.allowed(PRINCIPAL, operation, scope) == fresh  # the remembered answer too


def test_an_activation_grants_from_its_start_until_just_before_its_end():
    clock = Clock()
    site = SCOPES[2]
    authorizer = Authorizer([_assignment(0, WEBSITE_CONTRIBUTOR, SCOPES[1], 100.0, 700.0)], clock=clock)
    seen = {}
    for moment in (99.999, 100.0, 699.0, 699.999, 700.0, 701.0):
        clock.now = moment
        seen[moment] = authorizer.allowed(PRINCIPAL, OPERATIONS[0], site)
    assert seen == {99.999: False, 100.0: True, 699.0: True, 699.999: True, 700.0: False, 701.0: False}
    assert authorizer.active() == [] and not authorizer.has_any_access_within(PRINCIPAL, SCOPES[0])
    clock.now = 150.0
    assert authorizer.has_any_access_within(PRINCIPAL, SCOPES[0])
