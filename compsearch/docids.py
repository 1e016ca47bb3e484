"""Caller ids in API calls: validating the ids given to ``add``/``upsert``, and resolving what a
``delete`` names (your string ids, chunk ids or a filter) to the chunk ids that exist."""

from __future__ import annotations

import numpy as np

from .errors import CompsearchError


def check_doc_ids(ids, n: int) -> list[str] | None:
    """Caller-chosen ids for ``n`` texts: a list of distinct non-empty strings (or None)."""
    if ids is None:
        return None
    if isinstance(ids, str):
        raise CompsearchError("ids must be a list of strings, one per text")
    ids = list(ids)
    if len(ids) != n:
        raise CompsearchError(f"{len(ids)} ids for {n} texts: give one id per text")
    if any(not isinstance(i, str) or not i for i in ids):
        raise CompsearchError("ids must be non-empty strings")
    if len(set(ids)) != len(ids):
        raise CompsearchError("ids must be unique within one call")
    return ids


def delete_targets(store, ids: list, where, roots=()) -> list[int]:
    """The existing chunk ids that ``ids`` (strings: caller ids; integers: chunk ids) and
    ``where`` name, sorted."""
    chunk_ids = [
        int(i) for i in ids if isinstance(i, (int, np.integer)) and not isinstance(i, bool)
    ]
    names = [i for i in ids if isinstance(i, str)]
    if len(chunk_ids) + len(names) != len(ids):
        raise CompsearchError("delete(): ids must be strings (your ids) or integers (chunk ids)")
    chunk_ids += list(store.chunks_for_doc_ids(names).values())
    if where:
        chunk_ids += store.ids_where(where, roots).tolist()
    return sorted(set(store.get(chunk_ids)))
