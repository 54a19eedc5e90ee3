"""A grant that ends early ends in Azure too: its PIM activation (or time-bound assignment) is undone.

Why: issue 14 wants the local grant and Azure's side to start and end together. A grant ends early
when the agent session ends (idle eviction, the cap, the MCP session's DELETE) or the server stops
(stdin closed, SIGTERM, HTTP shutdown); Azure would otherwise keep the role until the grant's
planned end. ``access_revoke`` does the same inside its own tool call.

Best effort, bounded, audited:

* every grant's request (``SelfDeactivate``, or the blueprint's ``AdminRemove``) goes through the
  session's guard with the one-shot permit ``access_revoke`` uses, tied to that grant, this caller
  (``END_TOOL``) and that exact request; nothing general is allowed;
* all of a shutdown's grants are ended in parallel within one deadline (``END_SECONDS``), so a
  sandbox (or Azure) that does not answer delays a stop by at most that much;
* each end leaves one ``kind: grant`` record, event ``ended``, whose ``azure`` says what became of
  Azure's side: ``deactivated``/``removed``, or ``runs to its end at ...`` and why (PIM keeps an
  activation at least five minutes, ``ActiveDurationTooShort``; no answer in time; a refusal).
  When Azure's side runs on, the log says so too.

A grant never outlives its session (``--session-ttl``): it ends a minute before, and Azure's side is
asked to end at the grant's end instant, so a session's expiry needs nothing from here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from azure_agent_mcp.access.grants import Grant, GrantBook, utc_iso

_LOG = logging.getLogger("azure_agent_mcp.access")
END_SECONDS = 5.0
"""How long ending Azure's side of a batch of grants may take, all of them together."""
END_TOOL = "grant-end"
"""The caller named in the permits and audit records of the server's own ends (not a catalog tool)."""
_JOIN_GRACE = 0.5
"""Past the deadline, how long to wait for a worker still finishing its answer."""


@dataclass(frozen=True)
class AzureEnd:
    """What became of one grant's Azure side."""

    grant: Grant
    ended: bool
    """Azure's side ended now (deactivated or removed)."""
    azure: str | None
    """The audit's ``azure``: ``deactivated``, ``removed``, ``runs to its end at ...: why``; None for a local grant."""
    pim_code: str | None = None


def _runs_on(grant: Grant, why: str) -> str:
    return f"runs to its end at {utc_iso(grant.end)}: {why}"


def end_in_azure(azure: Any, book: GrantBook, grant: Grant, *, timeout: float, tool: str = END_TOOL) -> AzureEnd:
    """End ``grant``'s Azure side through ``azure``'s guard, within ``timeout`` seconds (its own call scope)."""
    if grant.pim is None:
        return AzureEnd(grant, False, None)
    if azure is None:
        return AzureEnd(grant, False, _runs_on(grant, "its agent session held no Azure connection to end it with"))
    from azure_agent_mcp.access import pim
    from azure_agent_mcp.callcontext import CallControl, CallInterruptedError, call_scope

    control = CallControl(timeout)
    control.start()
    with call_scope(session_id=grant.session_id, tool=tool, control=control):
        try:
            if grant.pim.kind == "SelfActivate":
                pim.deactivate(azure, book, grant.pim, session_id=grant.session_id, grant_id=grant.id, tool=tool)
                return AzureEnd(grant, True, "deactivated")
            pim.remove_agent_identity_assignment(azure, book, grant.pim, session_id=grant.session_id,
                                                 grant_id=grant.id, tool=tool)
            return AzureEnd(grant, True, "removed")
        except pim.PimActivationError as exc:
            code = exc.pim_code
            if code == "ActiveDurationTooShort":
                why = "PIM keeps an activation at least 5 minutes and refused to end it sooner (ActiveDurationTooShort)"
            elif code in ("Timeout", "ServiceRequestError", "ServiceResponseError") or control.expired:
                why = f"Azure did not answer within {timeout:g} s ({code})"
            else:
                why = f"PIM refused to end it ({code or 'no code'})"
            return AzureEnd(grant, False, _runs_on(grant, why), code)
        except CallInterruptedError:
            return AzureEnd(grant, False, _runs_on(grant, f"Azure did not answer within {timeout:g} s"))
        except Exception as exc:  # best effort: the local grant has ended whatever happens here
            why = (f"Azure did not answer within {timeout:g} s" if control.expired
                   else f"ending it failed ({type(exc).__name__})")
            return AzureEnd(grant, False, _runs_on(grant, why))


def end_grants(pairs: Sequence[tuple[Grant, Any]], book: GrantBook, *, reason: str, seconds: float = END_SECONDS,
               tool: str = END_TOOL, stop: threading.Event | None = None) -> list[AzureEnd]:
    """End each ``(grant, azure session)``'s Azure side, in parallel, all within ``seconds``; audit every end.

    ``stop`` set (a signal during shutdown) ends the wait at once: what has not answered by then runs to its end.
    The grants have stopped applying locally already (``GrantBook.take_session``). Returns what became of each."""
    results: dict[str, AzureEnd] = {}
    lock = threading.Lock()

    def work(grant: Grant, azure: Any) -> None:
        try:
            outcome = end_in_azure(azure, book, grant, timeout=seconds, tool=tool)
        except Exception as exc:  # pragma: no cover - end_in_azure answers every failure itself
            outcome = AzureEnd(grant, False, _runs_on(grant, f"ending it failed ({type(exc).__name__})"))
        with lock:
            results[grant.id] = outcome

    import time

    started = time.monotonic()
    workers = []
    for grant, azure in pairs:
        if grant.pim is None:
            results[grant.id] = AzureEnd(grant, False, None)
            continue
        worker = threading.Thread(target=work, args=(grant, azure), name=f"azure-agent-mcp grant end {grant.id}",
                                  daemon=True)  # never holds the process past the deadline
        worker.start()
        workers.append(worker)
    deadline = started + seconds + _JOIN_GRACE
    stopped = False
    for worker in workers:
        while worker.is_alive():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if stop is not None and stop.is_set():
                stopped = True
                break
            worker.join(min(left, 0.05))
        if stopped:
            break
    waited = time.monotonic() - started
    ends = []
    now = book.clock.now()
    for grant, _ in pairs:
        with lock:
            outcome = results.get(grant.id)
        if outcome is None:  # still waiting on Azure: what it does later is not known here
            why = (f"the server was told to stop at once (a signal) before Azure answered, after {waited:.1f} s"
                   if stopped else f"Azure did not answer within {seconds:g} s")
            outcome = AzureEnd(grant, False, _runs_on(grant, why))
        ends.append(outcome)
        _audit(book, outcome, reason, now)
    return ends


def _audit(book: GrantBook, outcome: AzureEnd, reason: str, now: float) -> None:
    grant = outcome.grant
    try:
        book.record("ended", grant, durable=False, at=utc_iso(now), reason=reason, azure=outcome.azure,
                    pim_code=outcome.pim_code)
    except Exception:
        _LOG.warning("the audit record of grant %s's end could not be written", grant.id, exc_info=True)
    if grant.pim is None:
        _LOG.info("grant %s ended (%s); it was local only", grant.id, reason)
    elif outcome.ended:
        _LOG.info("grant %s ended (%s); PIM %s '%s' at %s", grant.id, reason, outcome.azure, grant.pim.role_name,
                  grant.pim.scope)
    else:
        _LOG.warning("grant %s ended (%s), but in Azure '%s' at %s %s", grant.id, reason, grant.pim.role_name,
                     grant.pim.scope, outcome.azure)
