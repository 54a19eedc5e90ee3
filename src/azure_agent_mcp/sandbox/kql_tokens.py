"""The KQL subset's tokenizer: text to tokens that carry their line and position.

Hand-written because the sandbox is its own oracle: it must not borrow the product's (or a
library's) idea of the language. Positions follow Kusto's ParserFailure: 1-based line, 0-based
character within the line; the end of the text is the token ``<EOF>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure_agent_mcp.sandbox.kql_ast import KqlError

EOF = "<EOF>"

# Tabular operators whose names contain a hyphen: the tokenizer joins ``mv`` ``-`` ``expand``.
HYPHENATED = frozenset({
    "mv-expand", "mv-apply", "project-away", "project-keep", "project-rename", "project-reorder",
    "make-series", "top-nested", "top-hitters", "parse-where", "parse-kv", "sample-distinct",
})

PUNCTUATION = ("==", "!=", "=~", "!~", "<=", ">=", "<>", "|", ",", "(", ")", "[", "]", ".", "=", "<", ">",
               "+", "-", "*", "/", "%", ";", ":", "{", "}")

TIMESPAN_UNITS = {
    "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1), "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1), "min": timedelta(minutes=1), "sec": timedelta(seconds=1),
    "hr": timedelta(hours=1), "day": timedelta(days=1), "days": timedelta(days=1),
}


@dataclass(frozen=True)
class Token:
    kind: str  # ident, string, number, timespan, datetime, op, eof
    text: str
    value: Any
    line: int
    position: int


def _is_ident_start(ch: str) -> bool:
    return ch.isascii() and (ch.isalpha() or ch == "_")


def _is_ident_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def parse_datetime(raw: str) -> datetime:
    """A KQL datetime literal's content (ISO 8601, optionally quoted); naive means UTC."""
    text = raw.strip().strip("'\"").strip()
    if not text:
        raise ValueError("empty datetime")
    value = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.line_start = 0

    def where(self, offset: int | None = None) -> tuple[int, int]:
        offset = self.i if offset is None else offset
        line = self.text.count("\n", 0, offset) + 1
        start = self.text.rfind("\n", 0, offset) + 1
        return line, offset - start

    def fail(self, message: str, offset: int, token: str) -> KqlError:
        line, position = self.where(offset)
        return KqlError("syntax", message, line=line, position=position, token=token)


def tokenize(text: str) -> list[Token]:
    s = _Scanner(text)
    tokens: list[Token] = []
    n = len(text)
    while True:
        # whitespace and // comments
        while s.i < n:
            ch = text[s.i]
            if ch.isspace():
                s.i += 1
            elif text.startswith("//", s.i):
                end = text.find("\n", s.i)
                s.i = n if end < 0 else end
            else:
                break
        if s.i >= n:
            line, position = s.where(n)
            tokens.append(Token("eof", EOF, None, line, position))
            return tokens
        start = s.i
        line, position = s.where(start)
        ch = text[start]
        if ch in "'\"" or (ch == "@" and start + 1 < n and text[start + 1] in "'\""):
            value, s.i = _string(s, start)
            tokens.append(Token("string", text[start:s.i], value, line, position))
        elif ch.isdigit():
            tokens.append(_number(s, start, line, position))
        elif _is_ident_start(ch):
            tokens.append(_word(s, start, line, position, tokens))
        elif ch == "!" and start + 1 < n and _is_ident_start(text[start + 1]):
            end = start + 1
            while end < n and _is_ident_char(text[end]):
                end += 1
            if end < n and text[end] == "~":
                end += 1
            s.i = end
            tokens.append(Token("op", text[start:end], None, line, position))
        else:
            for punct in PUNCTUATION:
                if text.startswith(punct, start):
                    s.i = start + len(punct)
                    tokens.append(Token("op", punct, None, line, position))
                    break
            else:
                raise s.fail(f"unexpected character {ch!r}", start, ch)


def _string(s: _Scanner, start: int) -> tuple[str, int]:
    text = s.text
    verbatim = text[start] == "@"
    quote_at = start + 1 if verbatim else start
    quote = text[quote_at]
    i = quote_at + 1
    out: list[str] = []
    escapes = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\n":
            break
        if ch == "\\" and not verbatim:
            if i + 1 >= len(text) or text[i + 1] not in escapes:
                raise s.fail("unknown escape sequence in string literal", i, text[i:i + 2])
            out.append(escapes[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise s.fail("unterminated string literal", start, text[start:i])


def _number(s: _Scanner, start: int, line: int, position: int) -> Token:
    text = s.text
    n = len(text)
    i = start
    while i < n and text[i].isdigit():
        i += 1
    real = False
    if i + 1 < n and text[i] == "." and text[i + 1].isdigit():
        real = True
        i += 1
        while i < n and text[i].isdigit():
            i += 1
    if i < n and text[i] in "eE" and (i + 1 < n and (text[i + 1].isdigit() or (text[i + 1] in "+-" and i + 2 < n and text[i + 2].isdigit()))):
        real = True
        i += 2
        while i < n and text[i].isdigit():
            i += 1
    number_text = text[start:i]
    if i < n and _is_ident_start(text[i]):
        end = i
        while end < n and _is_ident_char(text[end]):
            end += 1
        unit = text[i:end]
        if unit not in TIMESPAN_UNITS:
            raise s.fail(f"unexpected {text[start:end]!r}: a number, or a timespan such as 1d, 2h, 30m, 10s", start, text[start:end])
        try:
            value = float(number_text) * TIMESPAN_UNITS[unit]
        except (OverflowError, ValueError):
            raise s.fail(f"timespan {text[start:end]!r} is out of range", start, text[start:end]) from None
        s.i = end
        return Token("timespan", text[start:end], value, line, position)
    try:
        number: int | float = float(number_text) if real else int(number_text)
    except (OverflowError, ValueError):
        raise s.fail(f"number {number_text[:20]!r} is out of range", start, number_text[:20]) from None
    if not real and not -(2**63) <= number < 2**63:
        raise s.fail(f"number {number_text[:20]!r} does not fit a long", start, number_text[:20])
    s.i = i
    return Token("number", number_text, number, line, position)


def _word(s: _Scanner, start: int, line: int, position: int, previous: list[Token]) -> Token:
    text = s.text
    n = len(text)
    i = start
    while i < n and _is_ident_char(text[i]):
        i += 1
    word = text[start:i]
    if i < n and text[i] == "-":
        j = i + 1
        while j < n and _is_ident_char(text[j]):
            j += 1
        if f"{word}-{text[i + 1:j]}" in HYPHENATED:
            s.i = j
            return Token("ident", text[start:j], None, line, position)
    if word == "in" and i < n and text[i] == "~":
        s.i = i + 1
        return Token("op", "in~", None, line, position)
    after_dot = bool(previous) and previous[-1].kind == "op" and previous[-1].text == "."
    if word == "datetime" and not after_dot:
        j = i
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == "(":
            close = text.find(")", j)
            if close < 0:
                raise s.fail("datetime literal without its closing ')'", start, text[start:])
            raw = text[j + 1:close]
            try:
                value = parse_datetime(raw)
            except ValueError:
                raise s.fail(f"invalid datetime literal {raw.strip()!r}: use ISO 8601, e.g. datetime(2024-01-31T12:00:00Z)", start, text[start:close + 1]) from None
            s.i = close + 1
            return Token("datetime", text[start:close + 1], value, line, position)
    s.i = i
    return Token("ident", word, None, line, position)
