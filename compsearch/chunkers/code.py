"""Other source code and configuration: a regex heuristic for column-0 definitions (``func``,
``fn``, ``function``, ``class``, C-style ``type name(...)``, toml/ini ``[sections]``, yaml
top-level keys, make targets, ...); each definition runs to its closing brace, the next
definition or, for section-like languages, the next section."""

from __future__ import annotations

import re

from .blocks import Block, gap


_GENERIC_DEF = re.compile(
    r"""^(?:
        (?:export\s+)?(?:default\s+)?(?:async\s+)?function\b
      | (?:pub(?:\([^)]*\))?\s+)?(?:(?:async|const|unsafe|extern(?:\s+"[^"]*")?)\s+)*fn\s
      | func\s
      | def\s
      | (?:pub(?:\([^)]*\))?\s+)?(?:impl|trait|mod|union)\b
      | (?:(?:public|private|protected|internal|static|abstract|final|sealed|partial
             |export|default|data|open|case|inline|pub(?:\([^)]*\))?)\s+)*
        (?:class|interface|object|enum|record|struct)\s
      | (?:export\s+)?(?:const|let|var)\s+[\w$]+\s*=\s*(?:async\s+)?
        (?:function\b|\([^)]*\)\s*=>|[\w$]+\s*=>)
      | (?:type|module|namespace)\s+\w
      | sub\s+\w
      | local\s+function\s
    )""",
    re.X,
)
# C-style function definition: "type name(args" at column 0, no ';' after '('.
_C_FUNCTION = re.compile(
    r"^(?!(?:if|for|while|switch|return|else|do|case|typedef|using|goto)\b)"
    r"[A-Za-z_][\w\s*&:<>,\[\]]*?[*&\s]\**[A-Za-z_~][\w:~]*\s*\([^;]*$"
)
_LANGUAGE_DEFS: dict[str, re.Pattern[str]] = {
    "python": re.compile(r"^(?:async\s+def|def|class)\s"),
    "toml": re.compile(r"^\[[^\]]+\]"),
    "ini": re.compile(r"^\[[^\]]+\]"),
    "yaml": re.compile(r"^[A-Za-z_\"'][\w\"' .-]*:(?:\s|$)"),
    "make": re.compile(r"^[\w./%$(){}-][^:=#\t]*:(?!=)"),
    "shell": re.compile(r"^(?:function\s+[\w.-]+|[\w.-]+\s*\(\s*\))"),
    "sql": re.compile(r"^(?:create|alter|drop|insert|update|delete|select|with)\b", re.I),
}
_DEFINITION_SCAN_CHARS = 300
_BRACE_END = re.compile(r"^(?:\}|end\b|\)|\])")
_COMMENT_PREFIXES = ("//", "/*", "*", "#", "--", ";", "@", "[")


def _is_definition(line: str, language: str | None) -> bool:
    if not line or line[0].isspace():
        return False
    line = line[:_DEFINITION_SCAN_CHARS]  # keeps the regexes cheap on huge lines
    pattern = _LANGUAGE_DEFS.get(language or "")
    if pattern is not None:
        return bool(pattern.match(line))
    return bool(_GENERIC_DEF.match(line) or _C_FUNCTION.match(line))


def _code_label(line: str) -> str:
    label = line.strip().rstrip("{").rstrip(":").strip()
    return label if len(label) <= 80 else label[:77] + "..."


def _definition_end(lines: list[str], start: int, limit: int, language: str | None) -> int:
    """Where the definition starting at ``start`` ends (exclusive), at most ``limit``."""
    if language == "python":  # indentation based: next column-0 code line
        for j in range(start + 1, limit):
            line = lines[j]
            if line.strip() and not line[0].isspace() and not line.startswith(("#", "@")):
                return j
        return limit
    if language in _LANGUAGE_DEFS:  # sections run until the next one
        return limit
    for j in range(start + 1, limit):
        if _BRACE_END.match(lines[j]):
            return j + 1
    return limit


def code_blocks(lines: list[str], language: str | None) -> list[Block]:
    n = len(lines)
    starts = [i for i in range(n) if _is_definition(lines[i], language)]
    blocks: list[Block] = []
    cursor = 0
    for k, def_line in enumerate(starts):
        if def_line < cursor:
            continue
        start = _with_leading_comments_any(lines, def_line, cursor)
        limit = starts[k + 1] if k + 1 < len(starts) else n
        limit = _with_leading_comments_any(lines, limit, def_line + 1) if limit < n else n
        end = _definition_end(lines, def_line, limit, language)
        blocks += gap(lines, cursor, start, (), 1 if cursor else None)
        path = (_code_label(lines[def_line]),)
        blocks.append(Block(start, end, path, 1))
        cursor = end
    blocks += gap(lines, cursor, n, (), 1 if cursor else None)
    return blocks


def _with_leading_comments_any(lines: list[str], start: int, floor: int) -> int:
    while start - 1 >= floor and lines[start - 1].strip().startswith(_COMMENT_PREFIXES):
        start -= 1
    return start
