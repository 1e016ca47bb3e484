"""An IVF / IVF-PQ index built from vector shards: train on a seeded sample, add shards in
parallel, and (when asked) merge the lists into FAISS's on-disk inverted lists.

The write path's ``index.build_index`` trains and adds in one process, one batch after another:
right up to a few million vectors. Past that, adding is the slow part and the lists may not fit
in RAM. The usual FAISS recipe for that (its ``demo_ondisk_ivf``) is what this module does:

1. **train** one empty index on a uniform sample drawn with a fixed seed -- the very sampler
   ``index.build_index`` uses, so both train the same quantiser on the same sample;
2. **add** each shard to its own copy of the trained index, in parallel (threads: FAISS releases
   the GIL while adding; or Ray tasks, each writing its block to a file beside the shards);
3. **merge** the blocks in shard order: in RAM (``IndexIVF.merge_from``), or into one
   ``OnDiskInvertedLists`` file (``faiss.contrib.ondisk.merge_ondisk``) that is memory-mapped when
   searched, so the index may exceed RAM.

Merging in shard order appends each block's entries to every list in the order a sequential add
would, so the result equals the single-process build (tested). Ids are row numbers across the
shard set in ``shards.json`` order (``ShardSet.batches``); a shard's hashes name the chunks.

The on-disk form is a folder: ``index.faiss`` and ``lists.ivfdata``, read back with
``load_ondisk`` (FAISS finds the lists beside the index file, so the folder may move).

``build_base`` is the same recipe for an index folder's FAISS base (the Ray path's write, and any
new base of an index whose base has on-disk lists): ids are the store's chunk ids, training uses
the write path's own sample read from the store, each shard contributes the chunks whose vectors
it served to this write (so the base holds exactly the vectors the store holds), and the other
chunks are added from the store; on-disk lists are built in a temp folder of the index folder
and moved into place by ``basefile.write`` before the commit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import CompsearchError
from .index import VectorIndex, _sample, build_index, choose_spec, import_faiss
from .index import sample_positions, sample_size
from .indexspec import IndexSpec
from .shards import ShardSet

STORE_BLOCK = 65_536  # chunks read from the store per block (those no shard served)

INDEX_FILE = "index.faiss"
LISTS_FILE = "lists.ivfdata"


def build_from_shards(
    shards: ShardSet | str | os.PathLike,
    spec: IndexSpec | str = "auto",
    *,
    seed: int = 0,
    threads: int | None = None,
    ondisk: str | os.PathLike | None = None,
    use_ray: bool = False,
    trained: VectorIndex | None = None,
) -> VectorIndex:
    """An IVF-family index over every vector of ``shards`` (see the module docstring).

    ``spec``: an ``IndexSpec`` or a kind ("auto" picks by size, as the write path does; it must
    come out as an IVF kind). ``threads``: shards added at once (default: CPU count). ``ondisk``:
    a new folder for the on-disk form (returned index reads its lists from there). ``use_ray``:
    add shards as Ray tasks on the connected cluster (``cluster.connect``) instead of threads.
    ``trained``: an empty index already trained for ``spec`` (e.g. on a sample of an earlier
    shard set): it is filled (not copied) and no training runs.
    """
    faiss = import_faiss()
    shards = shards if isinstance(shards, ShardSet) else ShardSet(shards)
    n, dim = len(shards), shards.dim
    if isinstance(spec, str):
        spec = choose_spec(n, dim, spec)
    if not spec.needs_training:
        raise CompsearchError(
            f"build_from_shards builds IVF indexes (ivf, ivf-sq8, ivf-pq), not {spec.kind}: "
            f"index.build_index builds the others"
        )
    if n < spec.nlist:
        raise CompsearchError(f"{n} vectors cannot train {spec.nlist} IVF lists")
    out = Path(ondisk).expanduser() if ondisk is not None else None
    if out is not None and out.exists():
        raise CompsearchError(f"{out} already exists: give a new folder for the on-disk index")

    if trained is None:
        trained = VectorIndex.empty(spec, dim)
        trained.train(_sample(shards.batches(), n, sample_size(spec, n), dim, seed))
    elif not trained.is_trained or trained.ntotal or trained.dim != dim:
        raise CompsearchError(f"trained= must be an empty, trained {dim}-d index")
    else:
        spec = trained.spec
    blob = faiss.serialize_index(trained.index)
    starts = np.concatenate([[0], np.cumsum(shards.counts)[:-1]]).astype(int).tolist()

    if out is None and not use_ray:
        with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
            blocks = pool.map(lambda i: _block(blob, shards, i, starts[i]), range(len(starts)))
            for block in blocks:  # in shard order: the lists come out as a sequential add's
                trained.index.merge_from(block, 0)
        return trained

    work = Path(tempfile.mkdtemp(prefix=".blocks-", dir=shards.folder))
    try:
        names = [str(work / f"block{i:06d}.faiss") for i in range(len(starts))]
        if use_ray:
            _blocks_on_ray(blob, shards, starts, names)
        else:
            with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
                list(pool.map(lambda i: _block_file(blob, shards, i, starts[i], names[i]),
                              range(len(starts))))  # fmt: skip
        if out is None:
            for name in names:
                trained.index.merge_from(faiss.read_index(name), 0)
            return trained
        return _merge_ondisk(trained, names, out, spec, dim)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def load_ondisk(folder: str | os.PathLike, spec: IndexSpec, dim: int) -> VectorIndex:
    """The on-disk index ``build_from_shards(..., ondisk=folder)`` wrote; lists stay on disk."""
    faiss = import_faiss()
    path = Path(folder) / INDEX_FILE
    if not path.is_file() or not (Path(folder) / LISTS_FILE).is_file():
        raise CompsearchError(f"no on-disk index in {folder}")
    from .basefile import quiet_stdout

    try:
        with quiet_stdout():
            index = faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR)
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or ["unreadable"])[0][:120]
        raise CompsearchError(f"on-disk index {path} is unreadable ({first})") from None
    if index.d != dim:
        raise CompsearchError(f"on-disk index {path} has dimension {index.d}, expected {dim}")
    return VectorIndex(index, spec, dim)


def _block(blob, shards: ShardSet, i: int, start: int, rows=None, ids=None):
    """Shard ``i`` added to a copy of the trained index: every row with ids ``start`` onwards,
    or the ``rows`` given with ``ids`` (a row may be given twice, for two chunks)."""
    vectors = shards.read(i)[1]
    if rows is None:
        return _filled(blob, np.arange(start, start + len(vectors), dtype=np.int64), vectors)
    return _filled(blob, ids, vectors[rows])


def _filled(blob, ids: np.ndarray, vectors: np.ndarray):
    index = import_faiss().deserialize_index(blob)
    index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(ids))
    return index


def _block_file(blob, shards: ShardSet, i: int, start: int, name: str) -> str:
    import_faiss().write_index(_block(blob, shards, i, start), name)
    return name


def _blocks_on_ray(blob, shards: ShardSet, starts: list[int], names: list[str]) -> None:
    from .cluster import import_ray

    ray = import_ray()
    if not ray.is_initialized():
        raise CompsearchError("use_ray needs a connected Ray cluster (compsearch.cluster.connect)")
    task = ray.remote(num_cpus=1)(_ray_block)
    ref = ray.put(np.asarray(blob))
    folder = str(shards.folder)
    ray.get(
        [task.remote(ref, folder, i, s, name) for i, (s, name) in enumerate(zip(starts, names))]
    )


def _ray_block(blob, folder: str, i: int, start: int, name: str) -> str:
    return _block_file(blob, ShardSet(folder), i, start, name)


def _merge_ondisk(trained: VectorIndex, names: list[str], out: Path, spec, dim) -> VectorIndex:
    """Merge block files into one on-disk list file; the folder appears whole or not at all."""
    from faiss.contrib.ondisk import merge_ondisk

    from .basefile import quiet_stdout
    from .fsutil import fsync_tree

    faiss = import_faiss()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with quiet_stdout():
            merge_ondisk(trained.index, names, str(tmp / LISTS_FILE))
        faiss.write_index(trained.index, str(tmp / INDEX_FILE))
        fsync_tree(tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_ondisk(out, spec, dim)


# ---------------------------------------------------------------- an index folder's base
def new_base(tx, spec: IndexSpec, dim: int, encoder=None) -> VectorIndex:
    """The FAISS base a write (``indexdir.Transaction`` ``tx``) builds for ``spec``: for an
    IVF-family kind, from the shards a ``ShardEncoder`` served it from and/or with on-disk lists
    (asked by the encoder's ``ondisk_lists``, or kept from the current base) by ``build_base``;
    otherwise ``index.build_index`` over the stored vectors."""
    store, n = tx.store, tx.store.count()
    shards = getattr(encoder, "shards", None)
    ondisk = bool(getattr(encoder, "ondisk_lists", False)) or bool(
        ((tx.manifest or {}).get("base") or {}).get("lists")
    )
    if spec.needs_training and n >= spec.nlist and (shards is not None or ondisk):
        return build_base(store, spec, dim, shards=shards, ondisk_root=tx.root if ondisk else None)
    return build_index(spec, dim, n, lambda: store.iter_vectors(dim))


def build_base(
    store,
    spec: IndexSpec,
    dim: int,
    *,
    shards: ShardSet | None = None,
    ondisk_root: Path | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> VectorIndex:
    """A new IVF-family base over every chunk of ``store`` (a write's, in its transaction), keyed
    by chunk id (see the module docstring). ``shards``: the set a ``ShardEncoder`` served this
    write from; ``ondisk_root``: build on-disk lists in a temp folder there (the returned index's
    ``lists``), else in RAM. Threads add the blocks (FAISS releases the GIL)."""
    from . import basefile

    n = store.count()
    if not spec.needs_training or n < spec.nlist:
        raise CompsearchError("internal error: build_base needs an IVF spec and >= nlist chunks")
    trained = VectorIndex.empty(spec, dim)
    every = store.all_ids()
    trained.train(store.vectors(every[sample_positions(n, sample_size(spec, n), seed)], dim))
    blob = import_faiss().serialize_index(trained.index)
    per_shard, rest = _assign(store, shards)
    work = basefile.build_dir(ondisk_root) if ondisk_root is not None else None
    names: list[str] = []

    def tasks():  # shard blocks, then the store's; store reads stay on this thread
        for i, (ids, rows) in sorted(per_shard.items()):
            yield lambda i=i, ids=ids, rows=rows: _block(blob, shards, i, 0, rows, ids)
        for s in range(0, len(rest), STORE_BLOCK):
            part = rest[s : s + STORE_BLOCK]
            vecs = store.vectors(part, dim)
            yield lambda part=part, vecs=vecs: _filled(blob, part, vecs)

    def take(block):  # in order: merged in RAM, or written to a block file and dropped
        if work is None:
            trained.index.merge_from(block, 0)
        else:
            names.append(str(work / f"block{len(names):06d}.faiss"))
            import_faiss().write_index(block, names[-1])

    try:
        # a bounded window of blocks in flight, so an on-disk build holds a few blocks in RAM,
        # not all of them (merge_ondisk then memory-maps the block files)
        window = 2 * (threads or os.cpu_count() or 1)
        inflight: deque = deque()
        with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
            for make in tasks():
                inflight.append(pool.submit(make))
                if len(inflight) >= window:
                    take(inflight.popleft().result())
            while inflight:
                take(inflight.popleft().result())
        if work is None:
            return trained
        _merge_into(trained, names, work / basefile.LISTS_FILE)
        for name in names:
            os.unlink(name)
        return trained
    except BaseException:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        raise


def _assign(store, shards: ShardSet | None) -> tuple[dict, np.ndarray]:
    """({shard: (chunk ids, rows)} of the chunks whose vectors that shard served, the ids of
    the others), reading the store's (id, content hash) column in id order."""
    per: dict[int, tuple[list, list]] = {}
    rest = []
    cur = store.db.execute("SELECT id, content_hash FROM chunks ORDER BY id")
    while rows := cur.fetchmany(STORE_BLOCK):
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        if shards is None:
            rest.append(ids)
            continue
        shard, row = shards.served([r[1] for r in rows])
        rest.append(ids[shard < 0])
        for s in np.unique(shard[shard >= 0]):
            mine = shard == s
            got = per.setdefault(int(s), ([], []))
            got[0].append(ids[mine])
            got[1].append(row[mine])
    out = {s: (np.concatenate(i), np.concatenate(r)) for s, (i, r) in per.items()}
    return out, (np.concatenate(rest) if rest else np.zeros(0, np.int64))


def _merge_into(trained: VectorIndex, names: list[str], lists: Path) -> None:
    """Merge block files into the on-disk lists ``lists`` of the empty ``trained`` index."""
    from faiss.contrib.ondisk import merge_ondisk

    from .basefile import quiet_stdout

    if not names:  # no block: one empty one, so the lists file exists
        names = [str(lists.parent / "empty.faiss")]
        import_faiss().write_index(trained.index, names[0])
    with quiet_stdout():  # FAISS says "resizing ..." on the C stdout
        merge_ondisk(trained.index, names, str(lists))
    trained.lists = lists
