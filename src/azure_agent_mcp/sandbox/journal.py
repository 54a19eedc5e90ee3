"""The admin request log and counters: what tests and benchmarks read back from the sandbox.

Entries never carry a secret or a token: query parameters that could hold one are redacted by
name, and token-derived fields are limited to identifiers (oid, appid, upn, session markers, uti).
The log is bounded (oldest entries drop first); ``seq`` keeps increasing so ``since`` stays valid.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

SENSITIVE_PARAMETERS = frozenset(
    {
        "client_secret",
        "client_assertion",
        "password",
        "refresh_token",
        "code",
        "code_verifier",
        "device_code",
        "access_token",
        "assertion",
        "id_token",
        "sig",
        "user_fic",
        "user_federated_identity_credential",
    }
)
LOG_LIMIT = 50_000


def redact_query(query: dict[str, str]) -> dict[str, str]:
    return {k: ("<redacted>" if k.lower() in SENSITIVE_PARAMETERS else v) for k, v in query.items()}


class Journal:
    """Request log + counters. Only the event-loop thread writes; readers get copies.

    ``tap``, when set, sees every entry as it is recorded and survives ``reset()``: a test suite
    uses it to keep the whole run's log (resets clear the log between tests).
    """

    def __init__(self) -> None:
        self.tap: Callable[[dict[str, Any]], None] | None = None
        self.reset()

    def reset(self) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self._seq = getattr(self, "_seq", 0)  # keep counting so `since` never goes backwards
        self.token_requests = 0
        self.by_grant: Counter[str] = Counter()
        self.by_session: Counter[str] = Counter()
        self.arm_requests = 0
        self.vault_requests = 0
        self.logs_requests = 0
        self.devops_requests = 0
        self.sidecar_requests = 0
        self.faults_injected = 0
        self.started = time.time()

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        entry["seq"] = self._seq
        kind = entry.get("kind")
        if kind == "token":
            self.token_requests += 1
            self.by_grant[entry.get("grant_type") or "(none)"] += 1
            session = entry.get("client_session_query") or entry.get("client_session_body")
            if session:
                self.by_session[session] += 1
        elif kind == "arm":
            self.arm_requests += 1
        elif kind == "vault":
            self.vault_requests += 1
        elif kind == "logs":
            self.logs_requests += 1
        elif kind == "devops":
            self.devops_requests += 1
        elif kind == "sidecar":
            self.sidecar_requests += 1
        if entry.get("fault"):
            self.faults_injected += 1
        self._entries.append(entry)
        if self.tap is not None:
            self.tap(dict(entry))
        return entry

    def entries(self, kind: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        return [dict(e) for e in self._entries if e["seq"] > since and (kind is None or e.get("kind") == kind)]

    def stats(self) -> dict[str, Any]:
        return {
            "token_requests": self.token_requests,
            "token_requests_by_grant": dict(self.by_grant),
            "token_requests_by_session": dict(self.by_session),
            "arm_requests": self.arm_requests,
            "vault_requests": self.vault_requests,
            "logs_requests": self.logs_requests,
            "devops_requests": self.devops_requests,
            "sidecar_requests": self.sidecar_requests,
            "faults_injected": self.faults_injected,
            "last_seq": self._seq,
            "uptime_seconds": round(time.time() - self.started, 3),
        }
