"""URL paths as the policy sees them: already canonical, or refused.

The policy must decide on the bytes that go on the wire. requests and urllib3 rewrite a path
before sending it (RFC 3986 dot-segment removal, upper-casing of escapes, decoding of escaped
unreserved characters, escaping of characters a path may not hold), and ARM decodes each escape
once. A path is accepted only when none of those steps can change it and when one decoding gives
one unambiguous list of segments. ARM and Key Vault never need anything else, so refusing is
both safer and simpler than normalising.

Refused, each with the offending part and what to write instead:

- empty segments (``//``, a trailing ``/``), ``.`` and ``..`` segments, escaped or not;
- a backslash, a control character, a space or any character outside RFC 3986's ``pchar``;
- non-ASCII, raw or as escaped UTF-8;
- an escape of an unreserved character (``%41`` is ``A``), in lower case (``%2f``), of ``/``,
  ``\\``, ``%`` or ``.``, or an invalid one (``%zz``);
- a fragment (checked by the caller, which has the whole URL).

Allowed escapes are the ASCII characters that ARM names legitimately carry but a path segment
cannot hold raw (``%20`` and the like), written in upper case, as Azure's SDKs write them.
"""

from __future__ import annotations

import re
import string
from urllib.parse import quote

UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# RFC 3986 pchar minus unreserved and pct-encoded: characters a segment may hold as they are.
RAW_DELIMITERS = frozenset("!$&'()*+,;=:@")
SEGMENT_CHARS = UNRESERVED | RAW_DELIMITERS
# Printable ASCII that may stand escaped: not unreserved (an escape would be decoded on the way
# out), never a separator or an escape character (the decoded path would split differently).
ESCAPABLE = frozenset(chr(c) for c in range(0x20, 0x7F)) - UNRESERVED - frozenset("/\\%")
_ESCAPE = re.compile(r"%(.{0,2})", re.S)
_HEX = frozenset("0123456789ABCDEFabcdef")
# The common case, checked in one step: non-empty segments of plain segment characters, no escape,
# no dot segment. Anything else takes the segment-by-segment path that says what is wrong.
_PLAIN = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9\-._~!$&'()*+,;=:@]+)+")


class PathRejected(ValueError):
    """The path is not canonical: the policy would decide on something other than what is sent."""

    def __init__(self, problem: str, canonical: str | None = None) -> None:
        message = problem if canonical is None else f"{problem}; the canonical form is '{canonical}'"
        super().__init__(message)
        self.problem = problem
        self.canonical = canonical


def quote_segment(value: str) -> str:
    """The canonical wire form of one decoded segment (what tools build URLs with)."""
    return quote(value, safe="".join(sorted(RAW_DELIMITERS)))


def _suggestion(segments: list[str]) -> str:
    """A canonical path for the segments a lenient reader would see (for the refusal's hint)."""
    kept: list[str] = []
    for raw in segments:
        if raw in ("", "."):
            continue
        if raw == "..":
            if kept:
                kept.pop()
            continue
        kept.append(raw)
    return "/" + "/".join(kept)


def _decode_escape(raw: str, match: re.Match[str]) -> str:
    digits = match.group(1)
    if len(digits) != 2 or not set(digits) <= _HEX:
        raise PathRejected(f"segment '{raw}' has an invalid percent-escape '%{digits}'")
    char = chr(int(digits, 16))
    if char in ("/", "\\"):
        raise PathRejected(f"segment '{raw}' encodes a path separator (%{digits})")
    if char == "%":
        raise PathRejected(f"segment '{raw}' is percent-encoded twice (%25)")
    if int(digits, 16) >= 0x80:
        raise PathRejected(f"segment '{raw}' escapes a non-ASCII byte (%{digits}); ARM and Key Vault paths are ASCII")
    if char in UNRESERVED:
        raise PathRejected(f"segment '{raw}' escapes the unreserved character '{char}' (%{digits}); write it as is")
    if char not in ESCAPABLE:
        raise PathRejected(f"segment '{raw}' escapes the control character %{digits}")
    if digits != digits.upper():
        raise PathRejected(f"segment '{raw}' writes the escape %{digits} in lower case; write %{digits.upper()}")
    return char


def decode_segment(raw: str) -> str:
    """One canonical segment, decoded once (as ARM will decode it); PathRejected otherwise."""
    decoded: list[str] = []
    position = 0
    for match in _ESCAPE.finditer(raw):
        decoded.append(_check_raw(raw, raw[position : match.start()]))
        decoded.append(_decode_escape(raw, match))
        position = match.end()
    decoded.append(_check_raw(raw, raw[position:]))
    return "".join(decoded)


def _check_raw(segment: str, chunk: str) -> str:
    for char in chunk:
        if char in SEGMENT_CHARS:
            continue
        if char == "\\":
            raise PathRejected(f"segment '{segment}' contains a backslash")
        if ord(char) > 0x7E:
            raise PathRejected(f"segment '{segment}' contains the non-ASCII character {char!r}")
        if ord(char) < 0x20 or ord(char) == 0x7F:
            raise PathRejected(f"segment '{segment}' contains a control character ({ord(char):#04x})")
        raise PathRejected(
            f"segment '{segment}' contains '{char}', which a URL path carries only escaped "
            f"(write %{ord(char):02X})"
        )
    return chunk


def path_segments(path: str, *, trailing_slash: bool = False) -> list[str]:
    """The decoded segments of a canonical URL path (original case kept); PathRejected otherwise.

    ``trailing_slash`` admits one final ``/`` (Key Vault's SDK writes ``/secrets/{name}/`` for the
    latest version; no client rewrites it, and Key Vault reads it as ``/secrets/{name}``).
    """
    if not path.startswith("/"):
        raise PathRejected(f"the path '{path[:80]}' does not start with '/'")
    if path == "/":
        return []
    if _PLAIN.fullmatch(path):
        return path[1:].split("/")
    body = path[1:]
    if trailing_slash and body.endswith("/") and len(body) > 1:
        body = body[:-1]
    raw_segments = body.split("/")
    segments: list[str] = []
    last = len(raw_segments) - 1
    for index, raw in enumerate(raw_segments):
        if raw == "":
            problem = "a trailing '/'" if index == last and index > 0 else "an empty segment ('//')"
            raise PathRejected(f"the path has {problem}", _suggestion(raw_segments))
        if raw in (".", ".."):
            raise PathRejected(f"the path has a dot segment '{raw}'", _suggestion(raw_segments))
        decoded = decode_segment(raw)
        if decoded in (".", ".."):
            raise PathRejected(f"segment '{raw}' is a dot segment in disguise")
        segments.append(decoded)
    return segments


def canonical_path(path: str) -> str:
    """``path`` itself when it is canonical (PathRejected otherwise): the string the policy records."""
    path_segments(path)
    return path
