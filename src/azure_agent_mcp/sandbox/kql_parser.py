"""Recursive descent over the KQL subset's tokens, to the syntax tree in ``kql_ast``.

Known KQL that the subset does not implement is told apart from junk: a real operator or
function outside the subset raises ``unsupported`` naming it, so a caller learns to rephrase
rather than to fix a typo. Nesting is bounded, so hostile text cannot exhaust the stack.
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.sandbox.kql_ast import (
    Binary,
    Call,
    CountOp,
    DistinctOp,
    ExtendOp,
    Index,
    InList,
    Item,
    KqlError,
    Literal,
    Member,
    MvExpandOp,
    Name,
    ProjectOp,
    Query,
    SortKey,
    SortOp,
    SummarizeOp,
    TakeOp,
    TopOp,
    Unary,
    Where,
    WhereOp,
)
from azure_agent_mcp.sandbox.kql_tokens import Token, tokenize

MAX_DEPTH = 64

SCALAR_FUNCTIONS = frozenset({
    "tostring", "tolower", "toupper", "tolong", "toint", "toreal", "todouble", "tobool", "todatetime",
    "isempty", "isnotempty", "isnull", "isnotnull", "not", "strlen", "strcat", "bag_keys",
    "array_length", "iif", "iff", "now", "ago", "bin", "coalesce",
})
AGGREGATE_FUNCTIONS = frozenset({"count", "countif", "dcount", "sum", "min", "max", "avg", "make_set", "make_list"})

# Real KQL outside the subset: named as unsupported rather than reported as junk.
UNSUPPORTED_OPERATORS = frozenset({
    "join", "union", "lookup", "parse", "parse-where", "parse-kv", "make-series", "render", "project-away",
    "project-keep", "project-rename", "project-reorder", "evaluate", "as", "invoke", "fork", "facet",
    "sample", "sample-distinct", "serialize", "top-nested", "top-hitters", "mv-apply", "getschema", "search",
    "find", "reduce", "scan", "partition", "consume", "externaldata", "range", "print", "datatable", "let",
    "materialize", "extend-schema", "graph-match", "make-graph", "summarize-nested",
})
UNSUPPORTED_BINARY = frozenset({
    "matches", "has_any", "has_all", "between", "!between", "hasprefix", "hassuffix", "!hasprefix",
    "!hassuffix", "like", "notlike", "contains_any", "has_any_cs", "in_cidr",
})
UNSUPPORTED_FUNCTIONS = frozenset({
    "extract", "extract_all", "split", "parse_json", "todynamic", "format_datetime", "datetime_add",
    "datetime_diff", "startofday", "startofweek", "startofmonth", "endofday", "substring", "replace",
    "replace_string", "replace_regex", "trim", "indexof", "case", "pack", "pack_array", "bag_pack",
    "array_concat", "set_union", "percentile", "percentiles", "arg_max", "arg_min", "dcountif",
    "sumif", "any", "take_any", "stdev", "variance", "make_bag", "hash", "tohex", "round", "floor",
    "ceiling", "abs", "log", "exp", "pow", "sqrt", "dynamic", "typeof", "gettype", "isnan", "toguid",
    "totimespan", "format_timespan", "parse_path", "parse_url", "array_slice", "array_index_of",
    "bag_merge", "bag_remove_keys", "zip", "range", "series_stats", "geo_distance_2points",
    "ipv4_is_private", "ipv4_is_match", "base64_encode_tostring", "base64_decode_tostring",
    "url_encode", "url_decode", "row_number", "prev", "next", "countof", "reverse", "toscalar",
})

STRING_OPERATORS = frozenset({
    "contains", "!contains", "contains_cs", "!contains_cs", "startswith", "!startswith", "startswith_cs",
    "!startswith_cs", "endswith", "!endswith", "endswith_cs", "!endswith_cs", "has", "!has", "has_cs", "!has_cs",
})
COMPARISONS = frozenset({"==", "!=", "=~", "!~", "<", "<=", ">", ">=", "<>"})


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    # --- helpers -------------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def is_op(self, text: str) -> bool:
        return self.tok.kind == "op" and self.tok.text == text

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "ident" and self.tok.text in words

    def fail(self, message: str, tok: Token | None = None) -> KqlError:
        tok = tok or self.tok
        return KqlError("syntax", message, line=tok.line, position=tok.position, token=tok.text)

    def unsupported(self, name: str, what: str, tok: Token) -> KqlError:
        return KqlError("unsupported", f"{what} '{name}' is not supported by this service's KQL subset",
                        operator=name, line=tok.line, position=tok.position, token=tok.text)

    def expect_op(self, text: str, context: str) -> Token:
        if not self.is_op(text):
            raise self.fail(f"expected '{text}' {context}, found '{self.tok.text}'")
        return self.advance()

    def expect_word(self, word: str, context: str) -> Token:
        if not self.is_word(word):
            raise self.fail(f"expected '{word}' {context}, found '{self.tok.text}'")
        return self.advance()

    def integer(self, context: str) -> int:
        tok = self.tok
        if tok.kind != "number" or not isinstance(tok.value, int):
            raise self.fail(f"expected a whole number {context}, found '{tok.text}'")
        self.advance()
        return int(tok.value)

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"expression nested more than {MAX_DEPTH} levels deep")

    # --- query and operators -------------------------------------------------------------------
    def query(self) -> Query:
        tok = self.tok
        if tok.kind != "ident":
            raise self.fail(f"a query starts with a table name, found '{tok.text}'")
        if tok.text in UNSUPPORTED_OPERATORS:
            raise self.unsupported(tok.text, "operator", tok)
        self.advance()
        if self.is_op("("):
            raise self.unsupported(tok.text, "tabular function", tok)
        table, at = tok.text, Where(tok.line, tok.position)
        operators: list[Any] = []
        while self.is_op("|"):
            self.advance()
            operators.append(self.operator())
        if self.tok.kind != "eof":
            if self.is_op(";"):
                raise self.unsupported("let", "statement", self.tok)
            raise self.fail(f"expected '|' or the end of the query, found '{self.tok.text}'")
        return Query(self.text, table, at, tuple(operators))

    def operator(self) -> Any:
        tok = self.tok
        if tok.kind != "ident":
            raise self.fail(f"expected a tabular operator after '|', found '{tok.text}'")
        name = tok.text
        if name in UNSUPPORTED_OPERATORS:
            raise self.unsupported(name, "operator", tok)
        handler = {
            "where": self.where_op, "filter": self.where_op, "project": self.project_op, "extend": self.extend_op,
            "summarize": self.summarize_op, "order": self.sort_op, "sort": self.sort_op, "take": self.take_op,
            "limit": self.take_op, "top": self.top_op, "mv-expand": self.mv_expand_op,
            "mvexpand": self.mv_expand_op, "count": self.count_op, "distinct": self.distinct_op,
        }.get(name)
        if handler is None:
            raise self.fail(f"unknown tabular operator '{name}'")
        self.advance()
        return handler(tok)

    def where_op(self, tok: Token) -> WhereOp:
        return WhereOp(self.expression(), Where(tok.line, tok.position))

    def project_op(self, tok: Token) -> ProjectOp:
        return ProjectOp(self.items("project"))

    def extend_op(self, tok: Token) -> ExtendOp:
        return ExtendOp(self.items("extend"))

    def distinct_op(self, tok: Token) -> DistinctOp:
        if self.is_op("*"):
            raise self.unsupported("distinct *", "operator form", self.tok)
        return DistinctOp(self.items("distinct"))

    def count_op(self, tok: Token) -> CountOp:
        return CountOp()

    def take_op(self, tok: Token) -> TakeOp:
        return TakeOp(self.integer(f"after '{tok.text}'"))

    def top_op(self, tok: Token) -> TopOp:
        count = self.integer("after 'top'")
        self.expect_word("by", "in 'top N by column'")
        return TopOp(count, self.sort_key())

    def sort_op(self, tok: Token) -> SortOp:
        self.expect_word("by", f"after '{tok.text}'")
        keys = [self.sort_key()]
        while self.is_op(","):
            self.advance()
            keys.append(self.sort_key())
        return SortOp(tuple(keys))

    def sort_key(self) -> SortKey:
        expr = self.expression()
        descending = True
        if self.is_word("asc", "desc"):
            descending = self.advance().text == "desc"
        nulls_first = not descending
        if self.is_word("nulls"):
            self.advance()
            if not self.is_word("first", "last"):
                raise self.fail(f"expected 'first' or 'last' after 'nulls', found '{self.tok.text}'")
            nulls_first = self.advance().text == "first"
        return SortKey(expr, descending, nulls_first)

    def summarize_op(self, tok: Token) -> SummarizeOp:
        aggregates: tuple[Item, ...] = ()
        if not self.is_word("by"):
            aggregates = self.items("summarize")
            for item in aggregates:
                if not (isinstance(item.expr, Call) and item.expr.name in AGGREGATE_FUNCTIONS):
                    raise self.fail("summarize takes aggregations such as count(), then 'by' and the grouping keys")
        by: tuple[Item, ...] = ()
        if self.is_word("by"):
            self.advance()
            by = self.items("summarize by")
        if not aggregates and not by:
            raise self.fail("summarize needs an aggregation such as count() or a 'by' clause")
        return SummarizeOp(aggregates, by)

    def mv_expand_op(self, tok: Token) -> MvExpandOp:
        item = self.item()
        limit = None
        if self.is_word("limit"):
            self.advance()
            limit = self.integer("after 'limit'")
        if self.is_word("to", "with_itemindex", "bagexpansion"):
            raise self.unsupported(f"mv-expand {self.tok.text}", "operator form", self.tok)
        if self.is_op(","):
            raise self.unsupported("mv-expand of several columns", "operator form", self.tok)
        return MvExpandOp(item, limit)

    def items(self, context: str) -> tuple[Item, ...]:
        if self.tok.kind == "eof" or self.is_op("|"):
            raise self.fail(f"expected a column or expression after '{context}'")
        items = [self.item()]
        while self.is_op(","):
            self.advance()
            items.append(self.item())
        return tuple(items)

    def item(self) -> Item:
        if self.tok.kind == "ident" and self.peek().kind == "op" and self.peek().text == "=":
            name = self.advance().text
            self.advance()
            return Item(name, self.expression())
        if self.is_op("(") and self.peek().kind == "ident" and self.peek(2).kind == "op" and self.peek(2).text == ",":
            raise self.unsupported("tuple assignment", "syntax", self.tok)
        return Item(None, self.expression())

    # --- expressions ---------------------------------------------------------------------------
    def expression(self) -> Any:
        self.nest()
        try:
            return self.or_expr()
        finally:
            self.depth -= 1

    def or_expr(self) -> Any:
        left = self.and_expr()
        while self.is_word("or"):
            self.advance()
            left = Binary("or", left, self.and_expr())
        return left

    def and_expr(self) -> Any:
        left = self.comparison()
        while self.is_word("and"):
            self.advance()
            left = Binary("and", left, self.comparison())
        return left

    def comparison(self) -> Any:
        left = self.additive()
        tok = self.tok
        if tok.kind == "op" and tok.text in COMPARISONS:
            self.advance()
            op = "!=" if tok.text == "<>" else tok.text
            return Binary(op, left, self.additive())
        if tok.text in ("in", "!in", "in~", "!in~") and tok.kind in ("ident", "op"):
            self.advance()
            self.expect_op("(", f"after '{tok.text}'")
            items = [self.expression()]
            while self.is_op(","):
                self.advance()
                items.append(self.expression())
            self.expect_op(")", f"to close the '{tok.text}' list")
            return InList(left, tuple(items), tok.text.startswith("!"), tok.text.endswith("~"))
        if tok.text in STRING_OPERATORS and tok.kind in ("ident", "op"):
            self.advance()
            return Binary(tok.text, left, self.additive())
        if tok.text in UNSUPPORTED_BINARY and tok.kind in ("ident", "op"):
            raise self.unsupported(tok.text, "operator", tok)
        if tok.kind == "op" and tok.text.startswith("!") and len(tok.text) > 1:
            raise self.fail(f"unknown operator '{tok.text}'")
        return left

    def additive(self) -> Any:
        left = self.multiplicative()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            op = self.advance().text
            left = Binary(op, left, self.multiplicative())
        return left

    def multiplicative(self) -> Any:
        left = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/", "%"):
            op = self.advance().text
            left = Binary(op, left, self.unary())
        return left

    def unary(self) -> Any:
        if self.is_op("-") or self.is_op("+"):
            op = self.advance().text
            self.nest()
            try:
                operand = self.unary()
            finally:
                self.depth -= 1
            return Unary(op, operand)
        return self.postfix()

    def postfix(self) -> Any:
        expr = self.primary()
        while True:
            if self.is_op("."):
                self.advance()
                tok = self.tok
                if tok.kind == "ident":
                    self.advance()
                    expr = Member(expr, tok.text)
                elif tok.kind == "op" and tok.text == "[":
                    self.advance()
                    expr = Index(expr, self.bracket_content())
                else:
                    raise self.fail(f"expected a property name after '.', found '{tok.text}'")
            elif self.is_op("["):
                self.advance()
                expr = Index(expr, self.bracket_content())
            else:
                return expr

    def bracket_content(self) -> Any:
        index = self.expression()
        self.expect_op("]", "to close '['")
        return index

    def primary(self) -> Any:
        tok = self.tok
        if tok.kind == "string":
            self.advance()
            return Literal(tok.value, "string")
        if tok.kind == "number":
            self.advance()
            return Literal(tok.value, "real" if isinstance(tok.value, float) else "long")
        if tok.kind == "timespan":
            self.advance()
            return Literal(tok.value, "timespan")
        if tok.kind == "datetime":
            self.advance()
            return Literal(tok.value, "datetime")
        if tok.kind == "op" and tok.text == "(":
            self.advance()
            inner = self.expression()
            self.expect_op(")", "to close '('")
            return inner
        if tok.kind == "op" and tok.text == "[" and self.peek().kind == "string":
            self.advance()
            name = self.advance()
            self.expect_op("]", "to close the bracketed column name")
            return Name(name.value, Where(name.line, name.position))
        if tok.kind == "ident":
            self.advance()
            if self.is_op("("):
                return self.call(tok)
            if tok.text in ("true", "false"):
                return Literal(tok.text == "true", "bool")
            if tok.text in ("null",):
                raise self.fail("KQL has no 'null' literal: use isnull() or isempty()", tok)
            return Name(tok.text, Where(tok.line, tok.position))
        raise self.fail(f"expected an expression, found '{tok.text}'")

    def call(self, tok: Token) -> Call:
        name = tok.text
        if name in UNSUPPORTED_FUNCTIONS or name in UNSUPPORTED_OPERATORS:
            raise self.unsupported(name, "function", tok)
        if name not in SCALAR_FUNCTIONS and name not in AGGREGATE_FUNCTIONS:
            raise KqlError("semantic", f"unknown function '{name}'", line=tok.line, position=tok.position,
                           token=name)
        self.expect_op("(", f"after '{name}'")
        args: list[Any] = []
        if not self.is_op(")"):
            if name == "count" and self.is_op("*"):
                raise self.fail("count() takes no argument", self.tok)
            args.append(self.expression())
            while self.is_op(","):
                self.advance()
                args.append(self.expression())
        self.expect_op(")", f"to close '{name}('")
        return Call(name, tuple(args), Where(tok.line, tok.position))


def parse(text: str) -> Query:
    """Parse one query of the subset, or raise ``KqlError``."""
    if not isinstance(text, str):
        raise KqlError("syntax", "the query must be a string")
    return _Parser(text).query()
