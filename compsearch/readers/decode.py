"""Decoding text files: BOMs, UTF-8, plausible cp1252, then charset detection; binary refused.

Decoding never raises: a file that is not text gets a short, stable reason instead, which ingest
reports as the file's ``Skipped`` reason.
"""

from __future__ import annotations

import re
import unicodedata

from charset_normalizer import from_bytes


_BINARY_SNIFF_BYTES = 8192
_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32", "utf-32"),
    (b"\xff\xfe", "utf-16", "utf-16"),
    (b"\xfe\xff", "utf-16", "utf-16"),
)
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v\x1b")
_MAX_CONTROL_RATIO = 0.02

# Non-ASCII characters that plausibly occur in Western European text.  Used
# to prefer cp1252 (the most common legacy encoding) over the sometimes odd
# guesses of charset_normalizer on short texts.
_WESTERN_CHARS = frozenset(
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝßàáâãäåæçèéêëìíîïñòóôõöøùúûüýÿŒœŠšŸŽžƒ“”‘’‚„–—…€•«»°©®™¡¿£¥¢§·\xa0"
)
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]{4,}")


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _control_ratio(text: str) -> float:
    if not text:
        return 0.0
    sample = text[:100_000]
    bad = sum(
        1
        for ch in sample
        if ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) in ("Cc", "Cs", "Co")
    )
    return bad / len(sample)


def _plausible_cp1252(data: bytes) -> str | None:
    """Decode as cp1252 if the result looks like Western European text."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    non_ascii = {ch for ch in text if ord(ch) > 0x7F}
    if not non_ascii <= _WESTERN_CHARS or _NON_ASCII_RUN.search(text):
        return None
    if _control_ratio(text) > 0:
        return None
    return text


def decode(data: bytes) -> tuple[str, str] | str:
    """Return ``(text, encoding)`` or a Skipped reason."""
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec), name
            except UnicodeDecodeError:
                break
    if b"\x00" in data[:_BINARY_SNIFF_BYTES]:
        return "binary file"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if _control_ratio(text) > _MAX_CONTROL_RATIO:
            return "binary file"
        return text, "utf-8"
    western = _plausible_cp1252(data)
    if western is not None:
        return western, "cp1252"
    best = from_bytes(data).best()
    if best is None:
        return "undecodable text (no encoding detected)"
    text = str(best)
    if _control_ratio(text) > _MAX_CONTROL_RATIO:
        return "undecodable text (too many control characters)"
    return text, best.encoding
