"""An MSAL token cache that knows which of its partitions belong to which agent session.

MSAL files a tagged session's access tokens under an extended cache key it hashes from the request
body; the hash function is private to MSAL, and ``search`` never returns those entries to a query
without the key. So the cache notes each key as MSAL stores or looks up a session's token, through
MSAL's public ``add``, ``modify`` and ``search`` hooks: the session is the request body's
``client_session`` when MSAL stores an answer, and the one a provider declared with ``serving``
when MSAL looks one up (a token reused from a persisted cache another process wrote). ``forget``
then removes exactly that session's access tokens with ``search`` and ``remove_at``.

This module imports nothing heavy: MSAL is imported when a concrete cache is built.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class SessionPartitions:
    """Mixin for an ``msal.TokenCache`` subclass: records session -> extended cache keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._partitions: dict[str, set[str]] = {}
        self._partitions_lock = threading.Lock()
        self._serving_local = threading.local()

    @contextmanager
    def serving(self, session_id: str | None) -> Iterator[None]:
        """Attribute the access token keys MSAL touches on this thread, meanwhile, to ``session_id``."""
        previous = getattr(self._serving_local, "session", None)
        self._serving_local.session = session_id
        try:
            yield
        finally:
            self._serving_local.session = previous

    def _note(self, ext_cache_key: Any) -> None:
        session = getattr(self._serving_local, "session", None)
        if session and ext_cache_key and isinstance(ext_cache_key, str):
            with self._partitions_lock:
                self._partitions.setdefault(session, set()).add(ext_cache_key)

    def add(self, event: dict[str, Any], **kwargs: Any) -> None:  # MSAL's hook for every answer it caches
        data = event.get("data") if isinstance(event, dict) else None
        session = data.get("client_session") if isinstance(data, dict) else None
        if session:
            with self.serving(str(session)):
                super().add(event, **kwargs)  # type: ignore[misc]
        else:
            super().add(event, **kwargs)  # type: ignore[misc]

    def modify(self, credential_type: Any, old_entry: Any, new_key_value_pairs: Any = None) -> None:
        if credential_type == self.CredentialType.ACCESS_TOKEN and new_key_value_pairs:  # type: ignore[attr-defined]
            self._note((old_entry or {}).get("ext_cache_key"))
        super().modify(credential_type, old_entry, new_key_value_pairs)  # type: ignore[misc]

    def search(self, credential_type: Any, target: Any = None, query: Any = None, **kwargs: Any) -> Any:
        if credential_type == self.CredentialType.ACCESS_TOKEN and isinstance(query, dict):  # type: ignore[attr-defined]
            self._note(query.get("ext_cache_key"))
        return super().search(credential_type, target=target, query=query, **kwargs)  # type: ignore[misc]

    def session_keys(self, session_id: str) -> frozenset[str]:
        with self._partitions_lock:
            return frozenset(self._partitions.get(session_id, ()))

    def partition_keys(self) -> frozenset[str]:
        """Every extended cache key this cache holds: those it saw, and those in its serialized state
        (a persisted cache other processes wrote into)."""
        with self._partitions_lock:
            keys = set().union(*self._partitions.values()) if self._partitions else set()
        serialize = getattr(self, "serialize", None)
        if callable(serialize):
            list(self.search(self.CredentialType.ACCOUNT))  # type: ignore[attr-defined]  # a persisted cache reloads
            state = json.loads(serialize() or "{}")
            for entry in (state.get(self.CredentialType.ACCESS_TOKEN) or {}).values():  # type: ignore[attr-defined]
                key = entry.get("ext_cache_key") if isinstance(entry, dict) else None
                if isinstance(key, str) and key:
                    keys.add(key)
        return frozenset(keys)

    def forget(self, session_id: str) -> int:
        """Remove this session's access tokens (refresh tokens and other sessions' partitions stay);
        returns how many were removed."""
        with self._partitions_lock:
            keys = self._partitions.pop(session_id, set())
        removed = 0
        with self.serving(None):
            for key in keys:
                kind = self.CredentialType.ACCESS_TOKEN  # type: ignore[attr-defined]
                for entry in list(self.search(kind, query={"ext_cache_key": key})):
                    self.remove_at(entry)  # type: ignore[attr-defined]
                    removed += 1
        return removed


@functools.cache
def _in_memory_class() -> type:
    import msal

    class SessionTokenCache(SessionPartitions, msal.SerializableTokenCache):
        """The in-memory cache of one process, partitioned per session."""

    return SessionTokenCache


def session_token_cache() -> SessionPartitions:
    """A fresh in-memory MSAL token cache that knows its sessions' partitions."""
    cache: SessionPartitions = _in_memory_class()()
    return cache


__all__ = ["SessionPartitions", "session_token_cache"]
