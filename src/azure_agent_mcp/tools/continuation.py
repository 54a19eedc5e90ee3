"""Continuation tokens the client cannot write: ARM's next link, sealed by this server process.

A ``nextLink`` is a URL. Handed to the client as it is, any URL the client writes would come
back as a "continuation", and only the pipeline policy would stand between it and the network.
So the link goes out sealed: an HMAC (a key per server process) over the link, the tool, the
agent session and the listing's scope. A token that was altered, forged, issued to another
session or tool, for another listing, or by an earlier server process does not open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

from azure_agent_mcp.tools.base import ToolInputError

_KEY = secrets.token_bytes(32)
_VERSION = 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: bytes) -> bytes:
    return hmac.new(_KEY, payload, hashlib.sha256).digest()


def seal(link: str, *, tool: str, session_id: str, scope: str, offset: int = 0) -> str:
    """``offset``: items of the page at ``link`` already handed out (a listing whose service pages
    bigger than the tool's ``top``)."""
    fields: dict[str, object] = {"v": _VERSION, "tool": tool, "session": session_id, "scope": scope, "link": link}
    if offset:
        fields["offset"] = int(offset)
    payload = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return f"{_b64(payload)}.{_b64(_mac(payload))}"


class ContinuationRefused(ToolInputError):
    code = "InvalidContinuation"


def _refused(why: str) -> ContinuationRefused:
    return ContinuationRefused(
        f"continuation refused: {why}.",
        hint="Pass back the continuation value from the previous result of this tool, in this session, unchanged; "
        "or list again without continuation.",
    )


def unseal(token: str, *, tool: str, session_id: str, scope: str | None = None) -> tuple[str, str]:
    """The sealed link and its scope; ContinuationRefused when the token does not open for this call."""
    link, sealed_scope, _ = unseal_at(token, tool=tool, session_id=session_id, scope=scope)
    return link, sealed_scope


def unseal_at(token: str, *, tool: str, session_id: str, scope: str | None = None) -> tuple[str, str, int]:
    """The sealed link, its scope and the offset into its page."""
    body, _, tag = token.partition(".")
    try:
        payload, mac = _unb64(body), _unb64(tag)
    except (ValueError, TypeError):
        raise _refused("it is not a continuation this server issued") from None
    # base64 decoding is lenient (standard-alphabet '+' '/' for '-' '_', unused low bits in the last
    # character): only the exact text seal() wrote opens, so no edited spelling of a token does
    canonical = _b64(payload) == body and _b64(mac) == tag
    if not tag or not canonical or not hmac.compare_digest(mac, _mac(payload)):
        raise _refused("its seal does not verify (it was altered, forged, or issued before this server restarted)")
    data = json.loads(payload)
    if data.get("v") != _VERSION:
        raise _refused("it is from another version of this server")
    if data.get("tool") != tool:
        raise _refused(f"it was issued by {data.get('tool')}, not {tool}")
    if data.get("session") != session_id:
        raise _refused("it was issued to another agent session")
    if scope is not None and str(data.get("scope", "")).lower() != scope.lower():
        raise _refused(f"it continues the listing of {data.get('scope')}, not of {scope}")
    offset = data.get("offset", 0)
    return str(data["link"]), str(data["scope"]), offset if isinstance(offset, int) and offset > 0 else 0
