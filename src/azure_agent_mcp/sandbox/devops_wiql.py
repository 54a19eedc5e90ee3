"""A WIQL subset: flat ``SELECT ... FROM WorkItems [WHERE ...] [ORDER BY ...]`` queries.

Supported: ``[Field]`` or dotted reference names; ``= <> != < > <= >=``, ``[NOT] IN (...)``,
``[NOT] CONTAINS [WORDS]``, ``[NOT] UNDER``; ``AND``, ``OR``, ``NOT`` and parentheses; string
and number literals and the ``@Me``, ``@project``, ``@Today [- n]`` macros. A syntax error is
the service's TF51006 naming the offending token («...») and where it is; an unknown field is
TF51005. Link queries (``FROM WorkItemLinks``) are refused with a clear message.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure_agent_mcp.sandbox.devops_errors import DevOpsFailure
from azure_agent_mcp.sandbox.devops_fields import Field, field_named, identity_matches
from azure_agent_mcp.sandbox.devops_world import Organization, WorkItem

MAX_QUERY = 32_000
MAX_DEPTH = 50
_TOKEN = re.compile(r"""(?:(?P<field>\[[^\]]*\])|(?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")"""
                    r"""|(?P<number>-?[0-9]{1,15}(?:\.[0-9]{1,15})?)"""
                    r"""|(?P<op><>|!=|<=|>=|=|<|>|\(|\)|,|\*|\+|-)|(?P<word>@?[A-Za-z_][A-Za-z0-9_.]*))""")
KEYWORDS = frozenset({"select", "from", "where", "and", "or", "not", "order", "by", "asc", "desc", "in", "contains",
                      "words", "under", "ever", "asof"})


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int  # 1-based character position in the query


class WiqlError(DevOpsFailure):
    def __init__(self, message: str) -> None:
        super().__init__(400, "LegacyQueryException", message)


def _syntax(expected: str, token: Token | None, query: str) -> WiqlError:
    if token is None:
        return WiqlError(f"TF51006: The query statement is incomplete: expecting {expected} at the end of the "
                         f"query (character {len(query) + 1}).")
    return WiqlError(f"TF51006: Expecting {expected}. The error is caused by «{token.text[:80]}» at character "
                     f"{token.position}.")


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    index = 0
    while True:
        while index < len(query) and query[index].isspace():
            index += 1
        if index >= len(query):
            break
        match = _TOKEN.match(query, index)
        if match is None or match.end() == index:
            raise WiqlError(f"TF51006: The query contains a character WIQL does not allow. The error is caused by "
                            f"«{query[index]}» at character {index + 1}.")
        kind = match.lastgroup or "word"
        text = match.group(kind)
        tokens.append(Token(kind, text, match.start(kind) + 1))
        index = match.end()
    return tokens


@dataclass
class Query:
    columns: list[Field]
    predicate: Callable[[WorkItem], bool]
    order: list[tuple[Field, bool]]  # (field, descending)


class _Parser:
    def __init__(self, query: str, org: Organization, caller_oid: str, project: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.index = 0
        self.org = org
        self.caller = caller_oid
        self.project = project
        self.depth = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def next(self, expected: str) -> Token:
        token = self.peek()
        if token is None:
            raise _syntax(expected, None, self.query)
        self.index += 1
        return token

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.lower() in words:
            self.index += 1
            return True
        return False

    def expect(self, word: str) -> None:
        token = self.peek()
        if not self.keyword(word):
            if word == "from" and token is not None:
                raise WiqlError(f"TF51006: The query statement is missing a FROM clause. The error is caused by "
                                f"«{token.text[:80]}» at character {token.position}.")
            raise _syntax(word.upper(), token, self.query)

    def field(self) -> Field:
        token = self.next("a field name")
        if token.kind == "field":
            name = token.text[1:-1]
        elif token.kind == "word" and token.text.lower() not in KEYWORDS and not token.text.startswith("@"):
            name = token.text
        else:
            raise _syntax("a field name", token, self.query)
        found = field_named(name)
        if found is None:
            raise WiqlError(f"TF51005: The query references a field that does not exist. The error is caused by "
                            f"«{token.text[:80]}» at character {token.position}.")
        return found

    def parse(self) -> Query:
        self.expect("select")
        columns: list[Field] = []
        if self.peek() is not None and self.peek().text == "*":  # type: ignore[union-attr]
            self.index += 1
            columns = [field_named("System.Id")]  # type: ignore[list-item]
        else:
            columns.append(self.field())
            while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.index += 1
                columns.append(self.field())
        self.expect("from")
        source = self.next("WorkItems")
        if source.text.lower() in ("workitemlinks",):
            raise WiqlError("TF51006: Link queries (FROM WorkItemLinks) are not supported by the sandbox's WIQL: "
                            "query FROM WorkItems.")
        if source.text.lower() != "workitems":
            raise _syntax("WorkItems", source, self.query)
        predicate: Callable[[WorkItem], bool] = lambda item: True  # noqa: E731
        if self.keyword("where"):
            predicate = self.disjunction()
        order: list[tuple[Field, bool]] = []
        if self.keyword("order"):
            self.expect("by")
            while True:
                field = self.field()
                descending = self.keyword("desc")
                if not descending:
                    self.keyword("asc")
                order.append((field, descending))
                if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                    self.index += 1
                    continue
                break
        leftover = self.peek()
        if leftover is not None:
            raise _syntax("the end of the query", leftover, self.query)
        return Query(columns, predicate, order)

    def disjunction(self) -> Callable[[WorkItem], bool]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise WiqlError("TF51006: The query nests conditions too deeply.")
        parts = [self.conjunction()]
        while self.keyword("or"):
            parts.append(self.conjunction())
        self.depth -= 1
        return parts[0] if len(parts) == 1 else (lambda item: any(p(item) for p in parts))

    def conjunction(self) -> Callable[[WorkItem], bool]:
        parts = [self.factor()]
        while self.keyword("and"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda item: all(p(item) for p in parts))

    def factor(self) -> Callable[[WorkItem], bool]:
        if self.keyword("not"):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise WiqlError("TF51006: The query nests conditions too deeply.")
            inner = self.factor()
            self.depth -= 1
            return lambda item: not inner(item)
        token = self.peek()
        if token is not None and token.text == "(":
            self.index += 1
            inner = self.disjunction()
            closing = self.next("')'")
            if closing.text != ")":
                raise _syntax("')'", closing, self.query)
            return inner
        return self.condition()

    def value(self) -> Any:
        token = self.next("a value")
        if token.kind == "string":
            return token.text[1:-1].replace(token.text[0] * 2, token.text[0])
        if token.kind == "number":
            return float(token.text) if "." in token.text else int(token.text)
        if token.kind == "word" and token.text.startswith("@"):
            macro = token.text.lower()
            if macro == "@me":
                return ("@me", self.caller)
            if macro == "@project":
                return self.project
            if macro == "@today":
                day = datetime.datetime.now(datetime.timezone.utc).date()
                sign = self.peek()
                if sign is not None and sign.kind == "number" and sign.text.startswith("-"):
                    self.index += 1
                    if "." in sign.text or len(sign.text) > 6:
                        raise _syntax("a number of days", sign, self.query)
                    return (day - datetime.timedelta(days=int(sign.text[1:]))).isoformat()
                if sign is not None and sign.text in ("+", "-"):
                    self.index += 1
                    amount = self.next("a number of days")
                    if amount.kind != "number" or "." in amount.text or len(amount.text) > 5:
                        raise _syntax("a number of days", amount, self.query)
                    offset = int(amount.text)
                    day += datetime.timedelta(days=offset if sign.text == "+" else -offset)
                return day.isoformat()
            raise WiqlError(f"TF51006: The macro «{token.text[:40]}» is not supported by the sandbox's WIQL "
                            f"(character {token.position}): use @Me, @project or @Today.")
        raise _syntax("a value", token, self.query)

    def condition(self) -> Callable[[WorkItem], bool]:
        field = self.field()
        negate = self.keyword("not")
        token = self.next("a comparison operator")
        operator = token.text.lower()
        if token.kind == "op" and operator in ("=", "<>", "!=", "<", ">", "<=", ">=") and not negate:
            value = self.value()
            return lambda item: _compare(self.org, field, item, operator, value)
        if token.kind == "word" and operator == "in":
            opening = self.next("'('")
            if opening.text != "(":
                raise _syntax("'('", opening, self.query)
            values = [self.value()]
            while True:
                sep = self.next("',' or ')'")
                if sep.text == ")":
                    break
                if sep.text != ",":
                    raise _syntax("',' or ')'", sep, self.query)
                values.append(self.value())
            return lambda item: negate != any(_compare(self.org, field, item, "=", v) for v in values)
        if token.kind == "word" and operator == "contains":
            self.keyword("words")
            value = self.value()
            return lambda item: negate != (str(value).lower() in str(_raw(item, field) or "").lower())
        if token.kind == "word" and operator in ("under", "ever"):
            value = self.value()
            if operator == "ever":
                return lambda item: negate != _compare(self.org, field, item, "=", value)
            return lambda item: negate != _under(_raw(item, field), value)
        raise _syntax("a comparison operator", token, self.query)


def _raw(item: WorkItem, field: Field) -> Any:
    if field.reference == "System.Id":
        return item.work_item_id
    if field.reference == "System.Rev":
        return item.rev
    return item.fields.get(field.reference)


def _under(stored: Any, value: Any) -> bool:
    text, wanted = str(stored or "").lower(), str(value).lower()
    return text == wanted or text.startswith(wanted + "\\")


def _compare(org: Organization, field: Field, item: WorkItem, operator: str, value: Any) -> bool:
    stored = _raw(item, field)
    if field.kind == "identity":
        if isinstance(value, tuple):
            same = stored == value[1]
        else:
            same = bool(value) and identity_matches(org, stored, str(value)) if value != "" else stored is None
        return same if operator == "=" else (not same if operator in ("<>", "!=") else False)
    if isinstance(value, tuple):
        value = value[1]
    left: Any = stored
    right: Any = value
    if isinstance(right, (int, float)) and not isinstance(left, (int, float)):
        try:
            left = float(left)
        except (TypeError, ValueError):
            return operator in ("<>", "!=")
    elif isinstance(left, (int, float)) and isinstance(right, str):
        try:
            right = float(right)
        except ValueError:
            return operator in ("<>", "!=")
    elif isinstance(right, str):
        left, right = str(left or "").lower(), right.lower()
    if left is None:
        return operator in ("<>", "!=")
    try:
        return {"=": left == right, "<>": left != right, "!=": left != right, "<": left < right,
                ">": left > right, "<=": left <= right, ">=": left >= right}[operator]
    except TypeError:
        return False


def parse(query: Any, org: Organization, caller_oid: str, project: str) -> Query:
    if not isinstance(query, str) or not query.strip():
        raise WiqlError("TF51006: The query is empty: send {\"query\": \"SELECT [System.Id] FROM WorkItems ...\"}.")
    if len(query) > MAX_QUERY:
        raise WiqlError(f"VS402337: The query is longer than {MAX_QUERY} characters.")
    return _Parser(query, org, caller_oid, project).parse()


def sort_key(item: WorkItem, order: list[tuple[Field, bool]]) -> tuple[Any, ...]:
    """A key that sorts by each ORDER BY field in turn (descending ones inverted), then by id."""
    key: list[Any] = []
    for field, descending in order:
        value = _raw(item, field)
        if isinstance(value, (int, float)):
            part: Any = (0, -value if descending else value, "")
        else:
            text = str(value or "").lower()
            part = (1, 0, _Inverted(text) if descending else text)
        key.append(part)
    key.append(item.work_item_id)
    return tuple(key)


class _Inverted:
    def __init__(self, text: str) -> None:
        self.text = text

    def __lt__(self, other: _Inverted) -> bool:
        return self.text > other.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Inverted) and self.text == other.text
