"""URL paths as the policy sees them: one canonical list of segments, or a refusal.

The mapper must see the request the way Azure will, or a rewritten path could slip a denied
operation past it. So, per segment: percent-decode, resolve ``.`` and ``..``, drop empty
segments (duplicate and trailing slashes). Matching later is case-insensitive.

What is refused rather than guessed (each would let the server see a different path than the
one checked): an encoded ``/`` or ``\\`` (``%2F``, ``%5C``: one side splits there, the other does
not), a dot segment written with escapes (``%2e%2e``), double encoding (``%252F``: the server
decodes once and sees ``%2F``, a second decode would see ``/``), control characters, invalid
UTF-8, and ``..`` that climbs above the root.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_ENCODED_SEPARATOR = re.compile(r"%(2[fF]|5[cC])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PathRejected(ValueError):
    """The path cannot be mapped without guessing how the server would read it."""


def decode_segment(raw: str) -> str:
    if "%" not in raw:
        decoded = raw
    else:
        if _ENCODED_SEPARATOR.search(raw):
            raise PathRejected(f"segment '{raw}' encodes a path separator (%2F or %5C)")
        try:
            decoded = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise PathRejected(f"segment '{raw}' percent-decodes to invalid UTF-8") from None
        if _ESCAPE.search(decoded):
            raise PathRejected(
                f"segment '{raw}' is percent-encoded twice (after one decoding it still reads '{decoded}')"
            )
    if "\\" in decoded:
        raise PathRejected(f"segment '{raw}' contains a backslash")
    if _CONTROL.search(decoded):
        raise PathRejected(f"segment '{raw}' contains a control character")
    return decoded


def path_segments(path: str) -> list[str]:
    """The decoded, dot-resolved, non-empty segments of a URL path (original case kept)."""
    if _CONTROL.search(path) or "\\" in path:
        raise PathRejected("the path contains a control character or a backslash")
    segments: list[str] = []
    for raw in path.split("/"):
        if raw == "":
            continue
        decoded = decode_segment(raw)
        if decoded in (".", ".."):
            if decoded != raw:
                raise PathRejected(f"segment '{raw}' is a percent-encoded dot segment")
            if decoded == "..":
                if not segments:
                    raise PathRejected("'..' climbs above the root of the path")
                segments.pop()
            continue
        segments.append(decoded)
    return segments
