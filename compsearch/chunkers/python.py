"""Python: top-level and class-level ``def``/``class`` spans from the ``ast`` module, decorators
and the comment lines right above included. Source that does not parse falls back to the regex
heuristic of ``code.py`` (the caller decides)."""

from __future__ import annotations

import ast

from .blocks import Block, SectionPath, gap


_PY_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def python_blocks(lines: list[str]) -> list[Block] | None:
    source = "\n".join(lines).replace("\r", " ")
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return _python_body(tree.body, lines, 0, len(lines), (), 0)


def _py_label(node: ast.AST) -> str:
    if isinstance(node, ast.ClassDef):
        return f"class {node.name}"
    if isinstance(node, ast.AsyncFunctionDef):
        return f"async def {node.name}"
    return f"def {node.name}"  # type: ignore[attr-defined]


def _with_leading_comments(lines: list[str], start: int, floor: int, prefix: str) -> int:
    """Move ``start`` up over comment lines directly above it."""
    while start - 1 >= floor and lines[start - 1].strip().startswith(prefix):
        start -= 1
    return start


def _python_body(
    body: list[ast.stmt], lines: list[str], lo: int, hi: int, path: SectionPath, depth: int
) -> list[Block]:
    """Blocks for the statements of a module (depth 0) or class body (depth 1)."""
    blocks: list[Block] = []
    cursor = lo
    for node in body:
        if not isinstance(node, _PY_DEFS) or node.end_lineno is None:
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
        if first < cursor:
            continue
        start = _with_leading_comments(lines, first, cursor, "#")
        end = min(node.end_lineno, hi)
        blocks += gap(lines, cursor, start, path, depth + 1 if cursor > lo else None)
        sub_path = path + (_py_label(node),)
        if isinstance(node, ast.ClassDef) and depth == 0:
            inner = _python_body(node.body, lines, start, end, sub_path, depth + 1)
            if inner:
                head = inner[0]
                inner[0] = Block(head.start, head.end, head.path, 1)
            blocks += inner
        else:
            blocks.append(Block(start, end, sub_path, depth + 1))
        cursor = end
    blocks += gap(lines, cursor, hi, path, depth + 1 if cursor > lo else None)
    return blocks
