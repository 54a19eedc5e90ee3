"""Can any operation match these patterns and none of those? (for hiding tools that can never run)

A tool declares operations that may themselves be patterns (``*/delete`` for a generic delete).
Whether a policy could ever allow one is a question about languages: is there a string matched
by the tool's pattern and by some ``Actions`` pattern, but by no ``NotActions`` or ``Deny``
pattern? With ``*`` as the only wildcard each pattern is a small automaton, so a breadth-first
search over the product of their (determinised) state sets answers it exactly and returns the
shortest such operation as a witness.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

# The search gives up after this many product states (the caller then keeps the tool visible:
# hiding a tool is a convenience, enforcement happens per request anyway).
STATE_BUDGET = 20_000
_OTHER = "~"  # stands for every character no pattern mentions ('~' is outside ARM operation syntax)

_Positions = frozenset[int]


def _closure(pattern: str, positions: set[int]) -> _Positions:
    stack = list(positions)
    result = set(positions)
    while stack:
        i = stack.pop()
        if i < len(pattern) and pattern[i] == "*" and i + 1 not in result:
            result.add(i + 1)
            stack.append(i + 1)
    return frozenset(result)


def _step(pattern: str, positions: _Positions, char: str) -> _Positions:
    moved: set[int] = set()
    for i in positions:
        if i < len(pattern):
            if pattern[i] == "*":
                moved.add(i)
            elif pattern[i] == char:
                moved.add(i + 1)
    return _closure(pattern, moved) if moved else frozenset()


class SearchBudgetExceeded(Exception):
    """The product automaton grew past the budget; the answer is unknown."""


def witness(include: Sequence[str], exclude: Sequence[str], budget: int = STATE_BUDGET) -> str | None:
    """The shortest string matched by every ``include`` pattern and by no ``exclude`` pattern.

    Patterns are compared case-insensitively; the witness is lowercase. Returns None when no such
    string exists; raises SearchBudgetExceeded when the search grows past ``budget`` states.
    """
    inc = [p.lower() for p in include]
    if _search(inc, [], budget) is None:
        return None
    # An exclude pattern that cannot match anything the includes match is irrelevant; dropping it
    # keeps the product small (the built-in Deny lists have dozens of patterns).
    candidates = [e for e in {e.lower() for e in exclude} if all(_may_overlap(e, i) for i in inc)]
    # Exact operations (the catalog has hundreds) exclude one string each: leave them out of the
    # product, and add back only one that the search actually returns, until a witness survives.
    exact = {e for e in candidates if "*" not in e}
    exc = sorted(e for e in candidates if "*" in e and _search([*inc, e], [], budget) is not None)
    while True:
        found = _search(inc, exc, budget)
        if found is None or found not in exact:
            return found
        exact.discard(found)
        exc.append(found)


def _literal_ends(pattern: str) -> tuple[str, str]:
    if "*" not in pattern:
        return pattern, pattern
    return pattern[: pattern.index("*")], pattern[pattern.rindex("*") + 1 :]


def _may_overlap(a: str, b: str) -> bool:
    """A cheap necessary condition for two patterns to share a string: compatible literal ends."""
    a_head, a_tail = _literal_ends(a)
    b_head, b_tail = _literal_ends(b)
    heads = a_head.startswith(b_head) or b_head.startswith(a_head)
    tails = a_tail.endswith(b_tail) or b_tail.endswith(a_tail)
    return heads and tails


def _search(inc: list[str], exc: list[str], budget: int) -> str | None:
    alphabet = sorted({c for p in (*inc, *exc) for c in p if c != "*"} | {_OTHER})
    start = (
        tuple(_closure(p, {0}) for p in inc),
        tuple(_closure(p, {0}) for p in exc),
    )
    seen = {start}
    queue: deque[tuple[tuple[tuple[_Positions, ...], tuple[_Positions, ...]], str]] = deque([(start, "")])
    while queue:
        (inc_states, exc_states), text = queue.popleft()
        if all(len(p) in s for p, s in zip(inc, inc_states)) and not any(
            len(p) in s for p, s in zip(exc, exc_states)
        ):
            return text
        for char in alphabet:
            next_inc = tuple(_step(p, s, char) for p, s in zip(inc, inc_states))
            if any(not s for s in next_inc):
                continue
            next_exc = tuple(_step(p, s, char) for p, s in zip(exc, exc_states))
            state = (next_inc, next_exc)
            if state in seen:
                continue
            if len(seen) >= budget:
                raise SearchBudgetExceeded(f"more than {budget} states")
            seen.add(state)
            queue.append((state, text + char))
    return None
