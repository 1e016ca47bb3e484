"""Search filters: one small grammar for the API and ``--where``, compiled to parameterised SQL.

A filter is a dict in the style users know from Chroma and MongoDB::

    {"kind": "markdown"}                          # equality (old style, still valid)
    {"kind": ["markdown", "python"]}              # any of (old style, still valid)
    {"year": {"$gte": 2020}, "draft": {"$ne": True}}
    {"$or": [{"source": "docs/*.md"}, {"tags": {"$in": ["api", "cli"]}}]}

Operators: ``$eq $ne $in $nin $gt $gte $lt $lte`` on a key, ``$and`` / ``$or`` over lists of
filters. Keys are ``source`` (a path or glob, matched against the stored absolute path *and* the
path relative to each indexed root, so ``docs/*.md`` works), ``section``, ``id``, or a metadata
key (dotted for nested values). The same grammar is written on the command line as
``key=value``, ``key!=value``, ``key>=value`` ... (values parsed as JSON numbers/booleans when
they look like them) or as a JSON object.

Why compile here rather than filter in Python: the store is SQLite, so a filter becomes a ``WHERE``
clause that the dense path turns into an id allow-list and the lexical path joins with FTS5 in one
query. Values and JSON paths are always bound as parameters and keys are validated, so no filter
can change the SQL; lists go through ``json_each`` so a 10,000-value ``$in`` is one parameter,
not 10,000 (SQLite caps the number of variables). Every mistake is one ``CompsearchError`` line.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from .errors import CompsearchError

COMPARISONS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = tuple(COMPARISONS) + ("$in", "$nin")
COLUMNS = {"source": "source", "section": "section", "id": "id"}
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)*\Z")
_GLOB_CHARS = set("*?[")
_CLI = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(>=|<=|!=|>|<|==|=)\s*(.*)\Z", re.S)
_CLI_OPS = {
    "=": "$eq",
    "==": "$eq",
    "!=": "$ne",
    ">": "$gt",
    ">=": "$gte",
    "<": "$lt",
    "<=": "$lte",
}
MAX_DEPTH = 32


def parse(where: Any) -> dict | None:
    """A filter from a dict, a ``key>=value`` / JSON string, or a list of those (ANDed)."""
    if where is None:
        return None
    if isinstance(where, dict):
        return where or None
    if isinstance(where, str):
        where = [where]
    if not isinstance(where, (list, tuple)):
        raise CompsearchError(
            f"bad filter: expected a dict or 'key=value' strings, got {type(where).__name__}"
        )
    parts: list[dict] = []
    equals: dict[str, list] = {}
    for item in where:
        if isinstance(item, dict):
            parts.append(item)
            continue
        if not isinstance(item, str):
            raise CompsearchError(f"bad filter: {item!r} is not a string or dict")
        text = item.strip()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise CompsearchError(f"bad filter: invalid JSON in {text!r} ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise CompsearchError(f"bad filter: JSON filter must be an object, got {text!r}")
            parts.append(obj)
            continue
        m = _CLI.match(text)
        if not m:
            raise CompsearchError(f"bad filter {item!r}: use key=value, key>=value, ... or JSON")
        key, op, raw = m.group(1), _CLI_OPS[m.group(2)], m.group(3).strip()
        if raw[:1] in ("<", ">", "=", "!"):
            raise CompsearchError(f"bad filter {item!r}: unknown operator")
        value = raw if key in ("source", "section") else _scalar(raw)
        if op == "$eq":  # repeated key=value means "any of" (as before)
            equals.setdefault(key, []).append(value)
        else:
            parts.append({key: {op: value}})
    for key, values in equals.items():
        parts.append({key: values[0] if len(values) == 1 else {"$in": values}})
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _scalar(raw: str):
    """A command-line value: JSON numbers, booleans and null are typed, anything else is text."""
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, (int, float, bool)) or value is None else raw


def compile(where: Any, roots: Sequence[str] = ()) -> tuple[str, list]:
    """``(sql, params)``: a boolean SQL expression over the ``chunks`` table, or ``("1", [])``."""
    where = parse(where)
    if not where:
        return "1", []
    params: list = []
    sql = _node(where, params, tuple(r.rstrip("/") for r in roots if r), 0)
    return sql, params


def _node(node, params: list, roots: tuple, depth: int) -> str:
    if depth > MAX_DEPTH:
        raise CompsearchError("bad filter: nested too deeply")
    if not isinstance(node, dict):
        raise CompsearchError(f"bad filter: expected an object, got {_short(node)}")
    if not node:
        return "1"
    clauses = []
    for key, value in node.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise CompsearchError(f"bad filter: {key} takes a non-empty list of filters")
            subs = [_node(v, params, roots, depth + 1) for v in value]
            clauses.append("(" + (" AND " if key == "$and" else " OR ").join(subs) + ")")
        elif isinstance(key, str) and key.startswith("$"):
            raise CompsearchError(
                f"bad filter: unknown operator {key!r} at the top level (use $and, $or or a key)"
            )
        else:
            clauses.append(_key_clause(key, value, params, roots))
    return "(" + " AND ".join(clauses) + ")"


def _key_clause(key, value, params: list, roots: tuple) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise CompsearchError(
            f"bad filter key {key!r}: use letters, digits, '_', '-' and '.' for nested keys"
        )
    if isinstance(value, dict):
        if not value:
            raise CompsearchError(f"bad filter for {key!r}: empty operator object")
        parts = [_op(key, op, arg, params, roots) for op, arg in value.items()]
        return "(" + " AND ".join(parts) + ")"
    if isinstance(value, (list, tuple, set)):
        return _op(key, "$in", list(value), params, roots)
    return _op(key, "$eq", value, params, roots)


def _column(key: str, params: list) -> str:
    if key in COLUMNS:
        return COLUMNS[key]
    path = "$" + "".join(f'."{part}"' for part in key.split("."))
    params.append(path)
    return "json_extract(metadata, ?)"


def _check_value(key: str, op: str, v) -> None:
    if isinstance(v, (dict, list, tuple, set)):
        raise CompsearchError(f"bad filter for {key!r}: {op} takes a single value, got {_short(v)}")
    if not (v is None or isinstance(v, (str, int, float, bool))):
        raise CompsearchError(f"bad filter for {key!r}: unsupported value type {type(v).__name__}")
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
        raise CompsearchError(f"bad filter for {key!r}: {v} is out of the 64-bit integer range")
    if isinstance(v, float) and v != v:
        raise CompsearchError(f"bad filter for {key!r}: NaN is not a value")


def _op(key: str, op, arg, params: list, roots: tuple) -> str:
    if op not in OPERATORS:
        raise CompsearchError(
            f"bad filter for {key!r}: unknown operator {op!r} (use {' '.join(OPERATORS)})"
        )
    if op in ("$in", "$nin"):
        if not isinstance(arg, (list, tuple, set)):
            raise CompsearchError(f"bad filter for {key!r}: {op} takes a list, got {_short(arg)}")
        values = list(arg)
        for v in values:
            _check_value(key, op, v)
        if key == "source":
            expr = _source_match(params, roots, values_json=json.dumps(values))
        else:
            col = _column(key, params)
            params.append(json.dumps([v for v in values if v is not None]))
            expr = f"{col} IN (SELECT value FROM json_each(?))"
            if any(v is None for v in values):
                col2 = _column(key, params)
                expr = f"({expr} OR {col2} IS NULL)"
        if op == "$in":
            return expr
        return f"NOT coalesce({expr}, 0)"
    _check_value(key, op, arg)
    if key == "source" and op in ("$eq", "$ne") and isinstance(arg, str):
        expr = _source_match(params, roots, value=arg)
        return expr if op == "$eq" else f"NOT ({expr})"
    col = _column(key, params)
    if arg is None:
        if op in ("$eq", "$ne"):
            return f"{col} IS {'NOT ' if op == '$ne' else ''}NULL"
        raise CompsearchError(f"bad filter for {key!r}: {op} cannot compare with null")
    if op in ("$eq", "$ne"):
        params.append(arg)
        # $ne keeps chunks without the key, as users of MongoDB/Chroma expect.
        return f"{col} {'IS' if op == '$eq' else 'IS NOT'} ?"
    if isinstance(arg, bool):
        raise CompsearchError(f"bad filter for {key!r}: {op} needs a number or a string")
    # Typed comparisons only: a number never orders against a string (SQLite would say it does).
    kind = "IN ('integer', 'real')" if isinstance(arg, (int, float)) else "= 'text'"
    col2 = _column(key, params)
    params.append(arg)
    return f"(typeof({col}) {kind} AND {col2} {COMPARISONS[op]} ?)"


def _source_match(
    params: list, roots: tuple, *, value: str | None = None, values_json: str | None = None
) -> str:
    """``source`` equals or globs a value, as an absolute path or relative to an indexed root.

    ``substr(source, len(root) + 2)`` is the root-relative path; every value is bound.
    """
    if value is not None:
        sql, ref, p = "(source GLOB ? OR source = ?", "?", [value, value]
    else:
        sql, ref, p = (
            ("EXISTS (SELECT 1 FROM json_each(?) j WHERE source GLOB j.value OR source = j.value"),
            "j.value",
            [values_json],
        )
    for root in roots:
        start = len(root) + 2
        sql += (
            f" OR (substr(source, 1, ?) = ? AND (substr(source, ?) GLOB {ref}"
            f" OR substr(source, ?) = {ref}))"
        )
        p += (
            [len(root) + 1, root + "/", start]
            + ([value] if value is not None else [])
            + [start]
            + ([value] if value is not None else [])
        )
    params.extend(p)
    return sql + ")"


def _short(v) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
