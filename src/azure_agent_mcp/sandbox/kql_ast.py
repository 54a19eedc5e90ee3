"""The sandbox KQL subset's vocabulary: its error type, result table and syntax tree.

Kept apart from the parser and the evaluator so that rooms (Resource Graph, Log Analytics) can
import the error and table types without either, and map ``KqlError`` to their own service's
error shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal as TypingLiteral

ErrorKind = TypingLiteral["syntax", "unsupported", "semantic"]


class KqlError(Exception):
    """A query the sandbox cannot answer, described without any service's error shape.

    ``kind`` is "syntax" (the text is not KQL), "unsupported" (valid KQL outside the subset;
    ``operator`` names the operator or function) or "semantic" (a column or function that does
    not resolve, a wrongly typed predicate). ``line`` is 1-based and ``position`` is the 0-based
    character offset within that line, as Kusto's ParserFailure reports them.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        operator: str | None = None,
        line: int | None = None,
        position: int | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.operator = operator
        self.line = line
        self.position = position
        self.token = token

    def __repr__(self) -> str:
        return f"KqlError({self.kind!r}, {self.message!r}, operator={self.operator!r}, line={self.line}, position={self.position}, token={self.token!r})"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a KQL type name: string, long, real, bool, datetime, timespan, dynamic


@dataclass
class Table:
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        names = [c.name for c in self.columns]
        return [dict(zip(names, row)) for row in self.rows]


# --- expressions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """Where a node starts in the text, for errors that point at it."""

    line: int
    position: int


@dataclass(frozen=True)
class Literal:
    value: Any
    type: str


@dataclass(frozen=True)
class Name:
    name: str
    at: Where


@dataclass(frozen=True)
class Member:
    """``base.key``: a property of a dynamic bag."""

    base: Any
    key: str


@dataclass(frozen=True)
class Index:
    """``base[expr]``: a bag key or an array index."""

    base: Any
    index: Any


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]
    at: Where


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Any


@dataclass(frozen=True)
class Binary:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class InList:
    left: Any
    items: tuple[Any, ...]
    negate: bool
    case_insensitive: bool


Expr = Literal | Name | Member | Index | Call | Unary | Binary | InList


# --- tabular operators --------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One ``[name =] expr`` of project, extend, summarize or distinct."""

    name: str | None
    expr: Any


@dataclass(frozen=True)
class SortKey:
    expr: Any
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class WhereOp:
    predicate: Any
    at: Where


@dataclass(frozen=True)
class ProjectOp:
    items: tuple[Item, ...]


@dataclass(frozen=True)
class ExtendOp:
    items: tuple[Item, ...]


@dataclass(frozen=True)
class SummarizeOp:
    aggregates: tuple[Item, ...]
    by: tuple[Item, ...]


@dataclass(frozen=True)
class SortOp:
    keys: tuple[SortKey, ...]


@dataclass(frozen=True)
class TakeOp:
    count: int


@dataclass(frozen=True)
class TopOp:
    count: int
    key: SortKey


@dataclass(frozen=True)
class MvExpandOp:
    item: Item
    limit: int | None


@dataclass(frozen=True)
class CountOp:
    pass


@dataclass(frozen=True)
class DistinctOp:
    items: tuple[Item, ...]


Operator = WhereOp | ProjectOp | ExtendOp | SummarizeOp | SortOp | TakeOp | TopOp | MvExpandOp | CountOp | DistinctOp


@dataclass(frozen=True)
class Query:
    text: str
    table: str
    table_at: Where
    operators: tuple[Any, ...]
