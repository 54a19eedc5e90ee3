"""Evaluation of a parsed KQL subset query over in-memory tables.

Each operator first checks its expressions against the incoming schema (so a misspelt column is
a semantic error even over zero rows, as in Kusto), then maps rows. Rows are dicts keyed by
column name; the schema is an ordered name -> KQL type mapping.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure_agent_mcp.sandbox import kql_values as v
from azure_agent_mcp.sandbox.kql_ast import (
    Binary,
    Call,
    Column,
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
    Table,
    TakeOp,
    TopOp,
    Unary,
    WhereOp,
)
from azure_agent_mcp.sandbox.kql_parser import AGGREGATE_FUNCTIONS, parse
from azure_agent_mcp.sandbox.kql_tokens import parse_datetime

Schema = dict[str, str]
Row = dict[str, Any]

# name -> (least, most) arguments; None: unbounded
ARITY: dict[str, tuple[int, int | None]] = {
    "tostring": (1, 1), "tolower": (1, 1), "toupper": (1, 1), "tolong": (1, 1), "toint": (1, 1),
    "toreal": (1, 1), "todouble": (1, 1), "tobool": (1, 1), "todatetime": (1, 1), "isempty": (1, 1),
    "isnotempty": (1, 1), "isnull": (1, 1), "isnotnull": (1, 1), "not": (1, 1), "strlen": (1, 1),
    "strcat": (1, 64), "bag_keys": (1, 1), "array_length": (1, 1), "iif": (3, 3), "iff": (3, 3),
    "now": (0, 1), "ago": (1, 1), "bin": (2, 2), "coalesce": (1, 64),
    "count": (0, 0), "countif": (1, 1), "dcount": (1, 1), "sum": (1, 1), "min": (1, 1), "max": (1, 1),
    "avg": (1, 1), "make_set": (1, 1), "make_list": (1, 1),
}
RESULT_TYPES = {
    "tostring": "string", "tolower": "string", "toupper": "string", "strcat": "string", "tolong": "long",
    "toint": "int", "toreal": "real", "todouble": "real", "tobool": "bool", "todatetime": "datetime",
    "isempty": "bool", "isnotempty": "bool", "isnull": "bool", "isnotnull": "bool", "not": "bool",
    "strlen": "long", "array_length": "long", "bag_keys": "dynamic", "now": "datetime", "ago": "datetime",
    "count": "long", "countif": "long", "dcount": "long", "avg": "real", "make_set": "dynamic",
    "make_list": "dynamic",
}
# Functions whose result column takes its argument's name, as Kusto names them.
NAME_TRANSPARENT = frozenset({"tostring", "tolower", "toupper", "tolong", "toint", "toreal", "todouble",
                              "tobool", "todatetime", "bin"})
AGGREGATE_PREFIX = {"dcount": "dcount_", "sum": "sum_", "min": "min_", "max": "max_", "avg": "avg_",
                    "make_set": "set_", "make_list": "list_"}
NUMERIC = frozenset({"long", "int", "real", "decimal"})


@dataclass(frozen=True)
class _Context:
    now: datetime


def _semantic(message: str, node: Any = None, token: str | None = None) -> KqlError:
    at = getattr(node, "at", None)
    return KqlError("semantic", message, line=at.line if at else None, position=at.position if at else None,
                    token=token)


# --- static checks and types ---------------------------------------------------------------------


def type_of(expr: Any, schema: Schema, aggregate: bool = False) -> str:
    """The expression's KQL type; raises for unknown columns, bad arity, misplaced aggregations."""
    if isinstance(expr, Literal):
        return expr.type
    if isinstance(expr, Name):
        if expr.name not in schema:
            raise _semantic(f"Failed to resolve column or scalar expression named '{expr.name}'", expr, expr.name)
        return schema[expr.name]
    if isinstance(expr, (Member, Index)):
        base_type = type_of(expr.base, schema)
        if isinstance(expr, Index):
            type_of(expr.index, schema)
        if base_type != "dynamic":
            raise _semantic(f"'{_describe(expr.base)}' is of type {base_type}: properties and indexes apply to "
                            "dynamic values only", _anchor(expr.base))
        return "dynamic"
    if isinstance(expr, Call):
        return _call_type(expr, schema, aggregate)
    if isinstance(expr, Unary):
        operand = type_of(expr.operand, schema)
        return operand
    if isinstance(expr, InList):
        type_of(expr.left, schema)
        for item in expr.items:
            type_of(item, schema)
        return "bool"
    if isinstance(expr, Binary):
        left, right = type_of(expr.left, schema), type_of(expr.right, schema)
        if expr.op in ("+", "-", "*", "/", "%"):
            return _arithmetic_type(expr.op, left, right)
        return "bool"
    raise _semantic(f"cannot evaluate {type(expr).__name__}")


def _arithmetic_type(op: str, left: str, right: str) -> str:
    if left in NUMERIC and right in NUMERIC:
        return "real" if "real" in (left, right) else "long"
    if left == "datetime" and right == "timespan" and op in "+-":
        return "datetime"
    if left == "timespan" and right == "datetime" and op == "+":
        return "datetime"
    if left == "datetime" and right == "datetime" and op == "-":
        return "timespan"
    if left == "timespan" and right == "timespan":
        return "timespan" if op in "+-" else "real"
    if left == "timespan" and right in NUMERIC and op in "*/":
        return "timespan"
    return "dynamic"


def _call_type(call: Call, schema: Schema, aggregate: bool) -> str:
    least, most = ARITY[call.name]
    if len(call.args) < least or (most is not None and len(call.args) > most):
        wanted = str(least) if least == most else f"{least} to {most}" if most else f"at least {least}"
        raise _semantic(f"{call.name}() takes {wanted} argument(s), got {len(call.args)}", call, call.name)
    if call.name in AGGREGATE_FUNCTIONS and not aggregate:
        raise _semantic(f"{call.name}() is an aggregation: use it in summarize", call, call.name)
    arg_types = [type_of(arg, schema) for arg in call.args]
    if call.name in RESULT_TYPES:
        return RESULT_TYPES[call.name]
    if call.name in ("iif", "iff"):
        return arg_types[1] if arg_types[1] == arg_types[2] else "dynamic"
    if call.name == "sum":
        return "real" if arg_types[0] == "real" else "long" if arg_types[0] in NUMERIC else "dynamic"
    return arg_types[0]  # bin, min, max, coalesce


def _anchor(expr: Any) -> Any:
    while isinstance(expr, (Member, Index)):
        expr = expr.base
    return expr


def _describe(expr: Any) -> str:
    return inferred_name(expr) or type(expr).__name__


def inferred_name(expr: Any) -> str | None:
    """The column name Kusto gives an unnamed expression: paths join with '_'."""
    if isinstance(expr, Name):
        return expr.name
    if isinstance(expr, Member):
        base = inferred_name(expr.base)
        return f"{base}_{expr.key}" if base else None
    if isinstance(expr, Index) and isinstance(expr.index, Literal) and isinstance(expr.index.value, (str, int)):
        base = inferred_name(expr.base)
        key = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(expr.index.value))
        return f"{base}_{key}" if base else None
    if isinstance(expr, Call) and expr.name in NAME_TRANSPARENT and expr.args:
        return inferred_name(expr.args[0])
    return None


def _aggregate_name(call: Call) -> str:
    if call.name in ("count", "countif"):
        return f"{call.name}_"
    return AGGREGATE_PREFIX[call.name] + (inferred_name(call.args[0]) or "")


def _output_names(items: Iterable[Item], taken: set[str], name_of: Any = inferred_name) -> list[str]:
    names: list[str] = []
    counter = 0
    for item in items:
        name = item.name or name_of(item.expr)
        if name is None:
            counter += 1
            while f"Column{counter}" in taken:
                counter += 1
            name = f"Column{counter}"
        base, suffix = name, 0
        while name in taken:
            suffix += 1
            name = f"{base}{suffix}"
        taken.add(name)
        names.append(name)
    return names


# --- evaluation of expressions -------------------------------------------------------------------


def _eval(expr: Any, row: Row, ctx: _Context) -> Any:
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Name):
        return row.get(expr.name)
    if isinstance(expr, Member):
        base = _eval(expr.base, row, ctx)
        return base.get(expr.key) if isinstance(base, dict) else None
    if isinstance(expr, Index):
        return _index(_eval(expr.base, row, ctx), _eval(expr.index, row, ctx))
    if isinstance(expr, Binary):
        return _binary(expr, row, ctx)
    if isinstance(expr, InList):
        left = _eval(expr.left, row, ctx)
        if left is None:
            return None
        items = [_eval(item, row, ctx) for item in expr.items]
        test = v.equal_ci if expr.case_insensitive else v.equal
        found = any(test(left, item) is True for item in items)
        return not found if expr.negate else found
    if isinstance(expr, Unary):
        operand = _eval(expr.operand, row, ctx)
        if expr.op == "+":
            return operand
        return -operand if v.is_number(operand) or isinstance(operand, timedelta) else None
    if isinstance(expr, Call):
        return _call(expr, row, ctx)
    raise KqlError("semantic", f"cannot evaluate {type(expr).__name__}")


def _index(base: Any, index: Any) -> Any:
    if isinstance(base, dict) and isinstance(index, str):
        return base.get(index)
    if isinstance(base, list) and isinstance(index, int) and not isinstance(index, bool):
        if -len(base) <= index < len(base):
            return base[index]
    return None


def _binary(expr: Binary, row: Row, ctx: _Context) -> Any:
    op = expr.op
    if op in ("and", "or"):
        left = _eval(expr.left, row, ctx)
        if op == "and" and left is False:
            return False
        if op == "or" and left is True:
            return True
        right = _eval(expr.right, row, ctx)
        if op == "and":
            return False if right is False else None if (left is not True or right is not True) else True
        return True if right is True else None if (left is not False or right is not False) else False
    left, right = _eval(expr.left, row, ctx), _eval(expr.right, row, ctx)
    if op == "==":
        return v.equal(left, right)
    if op == "!=":
        same = v.equal(left, right)
        return None if same is None else not same
    if op == "=~":
        return v.equal_ci(left, right)
    if op == "!~":
        same = v.equal_ci(left, right)
        return None if same is None else not same
    if op in ("<", "<=", ">", ">="):
        return v.compare(op, left, right)
    if op in ("+", "-", "*", "/", "%"):
        return _arithmetic(op, left, right)
    return v.string_operator(op, left, right)


def _arithmetic(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    a, b = v.normalize(a), v.normalize(b)
    try:
        if v.is_number(a) and v.is_number(b):
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if b == 0:
                return None
            if isinstance(a, int) and isinstance(b, int):
                quotient = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
                return quotient if op == "/" else a - quotient * b
            return a / b if op == "/" else math.fmod(a, b)
        if isinstance(a, datetime) and isinstance(b, timedelta) and op in "+-":
            return a + b if op == "+" else a - b
        if isinstance(a, timedelta) and isinstance(b, datetime) and op == "+":
            return b + a
        if isinstance(a, datetime) and isinstance(b, datetime) and op == "-":
            return a - b
        if isinstance(a, timedelta) and isinstance(b, timedelta):
            if op in "+-":
                return a + b if op == "+" else a - b
            if op == "/" and b:
                return a / b
        if isinstance(a, timedelta) and v.is_number(b):
            if op == "*":
                return a * b
            if op == "/" and b:
                return a / b
    except (OverflowError, ValueError):
        return None
    return None


def _call(call: Call, row: Row, ctx: _Context) -> Any:
    name = call.name
    args = [_eval(arg, row, ctx) for arg in call.args] if name not in ("iif", "iff") else []
    if name == "tostring":
        return v.tostring(args[0])
    if name == "tolower":
        return v.tostring(args[0]).lower()
    if name == "toupper":
        return v.tostring(args[0]).upper()
    if name == "strcat":
        return "".join(v.tostring(arg) for arg in args)
    if name in ("tolong", "toint"):
        return _to_int(args[0])
    if name in ("toreal", "todouble"):
        return _to_real(args[0])
    if name == "tobool":
        return _to_bool(args[0])
    if name == "todatetime":
        return _to_datetime(args[0])
    if name == "isempty":
        return args[0] is None or args[0] == ""
    if name == "isnotempty":
        return not (args[0] is None or args[0] == "")
    if name == "isnull":
        return args[0] is None
    if name == "isnotnull":
        return args[0] is not None
    if name == "not":
        return (not args[0]) if isinstance(args[0], bool) else None
    if name == "strlen":
        return len(v.tostring(args[0]))
    if name == "bag_keys":
        return list(args[0].keys()) if isinstance(args[0], dict) else None
    if name == "array_length":
        return len(args[0]) if isinstance(args[0], list) else None
    if name in ("iif", "iff"):
        chosen = call.args[1] if _eval(call.args[0], row, ctx) is True else call.args[2]
        return _eval(chosen, row, ctx)
    if name == "now":
        offset = args[0] if args else timedelta(0)
        return ctx.now + offset if isinstance(offset, timedelta) else None
    if name == "ago":
        return ctx.now - args[0] if isinstance(args[0], timedelta) else None
    if name == "bin":
        return _bin(args[0], args[1])
    if name == "coalesce":
        return next((arg for arg in args if arg is not None and arg != ""), args[-1] if args else None)
    raise _semantic(f"{name}() is an aggregation: use it in summarize", call, name)


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            real = _to_real(value)
            return int(real) if real is not None and math.isfinite(real) else None
    return None


def _to_real(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if v.is_number(value):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _to_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return v.normalize(value)
    if isinstance(value, str):
        try:
            return parse_datetime(value)
        except ValueError:
            return None
    return None


def _bin(value: Any, size: Any) -> Any:
    if v.is_number(value) and v.is_number(size) and size > 0:
        floored = math.floor(value / size) * size
        return int(floored) if isinstance(value, int) and isinstance(size, int) else float(floored)
    if isinstance(value, datetime) and isinstance(size, timedelta) and size > timedelta(0):
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return epoch + ((v.normalize(value) - epoch) // size) * size
    if isinstance(value, timedelta) and isinstance(size, timedelta) and size > timedelta(0):
        return (value // size) * size
    return None


# --- aggregations --------------------------------------------------------------------------------


def _aggregate(call: Call, rows: list[Row], ctx: _Context) -> Any:
    name = call.name
    if name == "count":
        return len(rows)
    values = [_eval(call.args[0], row, ctx) for row in rows]
    if name == "countif":
        return sum(1 for value in values if value is True)
    present = [value for value in values if value is not None]
    if name == "dcount":
        return len({v.hashable(value) for value in present})
    if name == "make_list":
        return present
    if name == "make_set":
        seen: dict[Any, Any] = {}
        for value in present:
            seen.setdefault(v.hashable(value), value)
        return list(seen.values())
    numbers = [value for value in present if v.is_number(value)]
    if name == "sum":
        return sum(numbers) if numbers else 0
    if name == "avg":
        return (sum(numbers) / len(numbers)) if numbers else None
    if not present:
        return None
    pick = min if name == "min" else max
    return pick(present, key=v.sort_key)


# --- operators -----------------------------------------------------------------------------------


def _where(op: WhereOp, schema: Schema, rows: list[Row], ctx: _Context) -> tuple[Schema, list[Row]]:
    kind = type_of(op.predicate, schema)
    if kind not in ("bool", "dynamic"):
        raise KqlError("semantic", f"the where predicate must be a boolean expression, not {kind}",
                       line=op.at.line, position=op.at.position, token="where")
    return schema, [row for row in rows if _eval(op.predicate, row, ctx) is True]


def _project(items: tuple[Item, ...], schema: Schema, rows: list[Row], ctx: _Context) -> tuple[Schema, list[Row]]:
    types = [type_of(item.expr, schema) for item in items]
    names = _output_names(items, set())
    out_schema = dict(zip(names, types))
    pairs = list(zip(names, (item.expr for item in items)))
    return out_schema, [{name: _eval(expr, row, ctx) for name, expr in pairs} for row in rows]


def _extend(op: ExtendOp, schema: Schema, rows: list[Row], ctx: _Context) -> tuple[Schema, list[Row]]:
    schema = dict(schema)
    rows = [dict(row) for row in rows]
    counter = 0
    for item in op.items:
        kind = type_of(item.expr, schema)
        name = item.name or inferred_name(item.expr)
        if name is None:
            counter += 1
            while f"Column{counter}" in schema:
                counter += 1
            name = f"Column{counter}"
        for row in rows:
            row[name] = _eval(item.expr, row, ctx)
        schema[name] = kind
    return schema, rows


def _summarize(op: SummarizeOp, schema: Schema, rows: list[Row], ctx: _Context) -> tuple[Schema, list[Row]]:
    key_types = [type_of(item.expr, schema) for item in op.by]
    agg_types = [type_of(item.expr, schema, aggregate=True) for item in op.aggregates]
    taken: set[str] = set()
    key_names = _output_names(op.by, taken)
    agg_names = _output_names(op.aggregates, taken, name_of=_aggregate_name)
    groups: dict[tuple[Any, ...], tuple[list[Any], list[Row]]] = {}
    for row in rows:
        values = [_eval(item.expr, row, ctx) for item in op.by]
        key = tuple(v.hashable(value) for value in values)
        groups.setdefault(key, (values, []))[1].append(row)
    if not op.by and not groups:
        groups[()] = ([], [])
    out: list[Row] = []
    for values, members in groups.values():
        record = dict(zip(key_names, values))
        for name, item in zip(agg_names, op.aggregates):
            record[name] = _aggregate(item.expr, members, ctx)
        out.append(record)
    return dict(zip(key_names + agg_names, key_types + agg_types)), out


def _sorted(keys: tuple[SortKey, ...], schema: Schema, rows: list[Row], ctx: _Context) -> list[Row]:
    for key in keys:
        type_of(key.expr, schema)
    decorated = [([_eval(key.expr, row, ctx) for key in keys], row) for row in rows]
    for position in reversed(range(len(keys))):
        key = keys[position]
        null_rank = (1, 0) if key.nulls_first == key.descending else (0, 1)  # (null, non-null)

        def rank(entry: tuple[list[Any], Row], i: int = position, nulls: tuple[int, int] = null_rank) -> Any:
            value = entry[0][i]
            return (nulls[0], (0, 0)) if value is None else (nulls[1], v.sort_key(value))

        decorated.sort(key=rank, reverse=key.descending)
    return [row for _, row in decorated]


def _mv_expand(op: MvExpandOp, schema: Schema, rows: list[Row], ctx: _Context) -> tuple[Schema, list[Row]]:
    type_of(op.item.expr, schema)
    name = op.item.name or inferred_name(op.item.expr) or "Column1"
    out_schema = dict(schema)
    out_schema[name] = "dynamic"
    out: list[Row] = []
    for row in rows:
        value = _eval(op.item.expr, row, ctx)
        if isinstance(value, dict):
            parts: list[Any] = [{key: inner} for key, inner in value.items()]
        elif isinstance(value, list):
            parts = list(value)
        else:
            parts = [value]  # null (or a scalar) stays one row; an empty array or bag yields none
        if op.limit is not None:
            parts = parts[: op.limit]
        for part in parts:
            expanded = dict(row)
            expanded[name] = part
            out.append(expanded)
    return out_schema, out


def _distinct(op: DistinctOp, schema: Schema, rows: list[Row], ctx: _Context) -> tuple[Schema, list[Row]]:
    out_schema, projected = _project(op.items, schema, rows, ctx)
    seen: dict[tuple[Any, ...], Row] = {}
    for row in projected:
        seen.setdefault(tuple(v.hashable(value) for value in row.values()), row)
    return out_schema, list(seen.values())


def _apply(op: Any, schema: Schema, rows: list[Row], ctx: _Context) -> tuple[Schema, list[Row]]:
    if isinstance(op, WhereOp):
        return _where(op, schema, rows, ctx)
    if isinstance(op, ProjectOp):
        return _project(op.items, schema, rows, ctx)
    if isinstance(op, ExtendOp):
        return _extend(op, schema, rows, ctx)
    if isinstance(op, SummarizeOp):
        return _summarize(op, schema, rows, ctx)
    if isinstance(op, SortOp):
        return schema, _sorted(op.keys, schema, rows, ctx)
    if isinstance(op, TakeOp):
        return schema, rows[: op.count]
    if isinstance(op, TopOp):
        return schema, _sorted((op.key,), schema, rows, ctx)[: op.count]
    if isinstance(op, MvExpandOp):
        return _mv_expand(op, schema, rows, ctx)
    if isinstance(op, CountOp):
        return {"Count": "long"}, [{"Count": len(rows)}]
    if isinstance(op, DistinctOp):
        return _distinct(op, schema, rows, ctx)
    raise KqlError("unsupported", f"operator {type(op).__name__} is not supported", operator=type(op).__name__)


# --- tables --------------------------------------------------------------------------------------


def _load(source: Any) -> tuple[Schema, list[Row]]:
    if isinstance(source, Table):
        schema = {column.name: column.type for column in source.columns}
        names = list(schema)
        rows = [dict(zip(names, (v.normalize(value) for value in row))) for row in source.rows]
    else:
        rows = [{str(k): v.normalize(value) for k, value in record.items()} for record in source]
        seen: dict[str, set[str]] = {}
        for row in rows:
            for key, value in row.items():
                kinds = seen.setdefault(key, set())
                kind = v.type_of_value(value)
                if kind:
                    kinds.add(kind)
        schema = {key: (kinds.pop() if len(kinds) == 1 else "dynamic") for key, kinds in seen.items()}
    strings = [name for name, kind in schema.items() if kind == "string"]
    for row in rows:
        for name in strings:
            if row.get(name) is None:
                row[name] = ""  # a KQL string is never null
    return schema, rows


def evaluate(query: Query | str, tables: Mapping[str, Iterable[Mapping[str, Any]] | Table], *,
             now: datetime | None = None) -> Table:
    """Run the query over the caller's tables (by exact name); rows are mappings or a ``Table``."""
    parsed = parse(query) if isinstance(query, str) else query
    if parsed.table not in tables:
        known = ", ".join(sorted(tables)) or "none"
        raise KqlError("semantic", f"Failed to resolve table expression named '{parsed.table}' (tables: {known})",
                       line=parsed.table_at.line, position=parsed.table_at.position, token=parsed.table)
    ctx = _Context(v.normalize(now) if now else datetime.now(UTC))
    try:
        schema, rows = _load(tables[parsed.table])
        for op in parsed.operators:
            schema, rows = _apply(op, schema, rows, ctx)
    except RecursionError:
        raise KqlError("semantic", "the query is nested too deeply to evaluate") from None
    columns = [Column(name, kind) for name, kind in schema.items()]
    return Table(columns, [[row.get(column.name) for column in columns] for row in rows])
