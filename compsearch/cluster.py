"""Embedding at cluster scale with Ray Data: files -> chunks -> vectors, written as vector shards.

For corpora whose encoding outgrows one machine. Only the expensive, embarrassingly parallel part
runs on the cluster; the index itself is still written by the one writer of the index format
(``indexing.index_paths`` under the index's lock), which takes the vectors from the shards by
content hash (``shards.ShardEncoder``) instead of encoding them::

    driver: discover files (and drop those the index already holds unchanged)
      -> ray.data.from_items(files)
      -> map_batches(_Embedder, actor pool: one encoder per worker, 1 CPU or 1 GPU each)
           each batch of files: read, parse, chunk (the encoder's own tokenizer), encode,
           write one shard (safetensors, named by its content, so a re-run skips it)
      -> shards.json (the set's manifest, written last)
    driver: Retriever.index(paths) with ShardEncoder(encoder, shards): chunks again (cheap),
            looks every vector up by content hash, encodes only what the shards miss; when
            the write builds an IVF-family base (``index_type="ivf"``, ``ivf-sq8``, ``ivf-pq``,
            or ``auto`` at that size), ``shardindex.build_base`` fills it from the shards in
            parallel, keyed by chunk id (``ondisk_lists``: FAISS on-disk inverted lists).

The workers load the encoder from a folder the driver saves beside the shards (a compsearch
encoder) or from its source (a sentence-transformers folder), in the driver's dtype, and refuse
to run when the fingerprint they get differs. The shard folder must be visible to the driver and
every worker (a shared file system on a real cluster; any folder on a local one).

``ray`` is an optional dependency (``pip install 'compsearch[ray]'``), imported only here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import CompsearchError
from .shards import SET_FILE, ShardEncoder, ShardSet, read_shard, shard_name, text_hashes
from .shards import write_set, write_shard

FILES_PER_SHARD = 64  # files per Ray batch, i.e. per shard (at most files / workers)
ENCODER_DIR = "encoder"  # where the driver saves a compsearch encoder for the workers
DISCOVER_OPTIONS = ("include_hidden", "respect_gitignore", "max_file_bytes", "include", "exclude")


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise CompsearchError(
            "Ray is not installed: pip install 'compsearch[ray]' (or pip install 'ray[data]')"
        ) from None
    return ray


@dataclass
class EmbedReport:
    """What one ``embed`` run did."""

    shards_dir: str = ""
    fingerprint: str = ""  # the encoder's
    files: int = 0  # files sent to the workers
    shards: int = 0
    vectors: int = 0  # vectors in the shard set
    reused_shards: int = 0  # shards a previous run had already written
    workers: int = 0
    seconds: float = 0.0
    served: int = 0  # filled in by ``index``: vectors the write path took from the shards
    encoded_here: int = 0  # ... and vectors it had to encode itself (shards missed them)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"ray: {self.files} files encoded by {self.workers} workers into {self.shards} shards "
            f"({self.vectors} vectors, {self.reused_shards} shards reused) in {self.seconds:.1f}s; "
            f"{self.served} vectors taken from the shards, {self.encoded_here} encoded here"
        )


# ---------------------------------------------------------------- connecting
def connect(address: str | None = None, workers: int = 2) -> bool:
    """Join the cluster at ``address`` ("auto": the one ``ray start`` runs here), or start a local
    one with ``workers`` CPU slots. True when this call started it (and should shut it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [_package_parent(), _pythonpath()]))}
    if os.environ.get("COMPSEARCH_HOME"):
        env["COMPSEARCH_HOME"] = os.environ["COMPSEARCH_HOME"]
    kwargs: dict[str, Any] = dict(
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": env},
    )
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=workers, object_store_memory=200 * 1024**2, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or ["failed"])[0][:160]
        raise CompsearchError(f"cannot connect to a Ray cluster at {address}: {first}") from None
    return True


def _package_parent() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _pythonpath() -> str:
    return os.environ.get("PYTHONPATH", "")


# ---------------------------------------------------------------- the workers
class _Embedder:
    """One encoder per Ray actor; each call gets a batch of files and writes one shard."""

    def __init__(self, spec: dict):
        import torch

        torch.set_num_threads(max(1, int(spec.get("threads") or 1)))
        self.spec = spec
        self.encoder = _load_worker_encoder(spec)
        if self.encoder.fingerprint != spec["fingerprint"]:
            raise CompsearchError(
                f"the worker loaded encoder {self.encoder.fingerprint[:12]}, not the driver's "
                f"{spec['fingerprint'][:12]} (is {spec['source']} the same on every machine?)"
            )
        from .chunking import ChunkingConfig

        self.chunking = ChunkingConfig.from_dict(spec["chunking"])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = self._chunks(batch)
        hashes = text_hashes(texts)
        unique = dict(zip(hashes, texts))  # one vector per distinct text
        name, count, reused = "", 0, 0
        if unique:
            keys = sorted(unique)
            name, count = shard_name(keys), len(keys)
            path = Path(self.spec["out"]) / name
            if not self._finished(path, count):
                # one call: the encoder sorts by length and batches itself
                vectors = self.encoder.encode([unique[h] for h in keys], kind="document")
                write_shard(path, keys, vectors, self.spec["fingerprint"])
            else:
                reused = 1
        return {
            "shard": np.array([name]),
            "count": np.array([count]),
            "files": np.array([len(batch["path"])]),
            "reused": np.array([reused]),
        }

    def _chunks(self, batch: dict[str, np.ndarray]) -> list[str]:
        from .chunking import chunk_document
        from .documents import Candidate, Skipped
        from .ingest import parse, read_bytes

        out: list[str] = []
        for path, kind, language, compressed in zip(
            batch["path"], batch["kind"], batch["language"], batch["compressed"]
        ):
            cand = Candidate(Path(str(path)), str(kind), str(language) or None, bool(compressed))
            data = read_bytes(cand.path)
            doc = data if isinstance(data, Skipped) else parse(cand, data)
            if isinstance(doc, Skipped):
                continue  # the write path reports it
            out.extend(
                ch.embed_text
                for ch in chunk_document(doc, self.encoder.count_tokens, self.chunking)
            )
        return out

    def _finished(self, path: Path, count: int) -> bool:
        if not path.is_file():
            return False
        try:
            return len(read_shard(path, self.spec["fingerprint"], with_vectors=False)[0]) == count
        except CompsearchError:
            return False  # damaged or another encoder's: write it again


def _load_worker_encoder(spec: dict):
    if spec["kind"] == "compsearch":
        from .encoder import Encoder

        return Encoder.load(spec["source"], dtype=spec["dtype"], device=spec.get("device"))
    from .embedders import load_encoder

    return load_encoder(spec["source"])


# ---------------------------------------------------------------- the driver
def embed(
    paths: Sequence[str | os.PathLike],
    shards_dir: str | os.PathLike,
    encoder,
    *,
    chunking=None,
    address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float = 0,
    files_per_shard: int = FILES_PER_SHARD,
    skip: dict[str, str] | None = None,
    **discover_options: Any,
) -> EmbedReport:
    """Chunk and encode every file under ``paths`` on a Ray cluster into a shard set.

    ``encoder``: the encoder whose vectors the index wants (its fingerprint is checked on every
    worker). ``chunking``: a ``ChunkingConfig`` (default: compsearch's). ``address``: a running
    cluster ("auto" or "ray://host:10001"); None starts a local one with ``workers`` CPU slots.
    ``workers``: encoder actors (one per slot; ``gpus_per_worker=1`` puts one on each GPU).
    ``skip``: {absolute path: content hash} of files not to embed (those the index already holds
    unchanged). ``discover_options``: as ``ingest.discover`` (include_hidden, include, ...).
    """
    from .chunking import ChunkingConfig
    from .documents import Candidate
    from .indexdir import encoder_entry
    from .ingest import content_hash, discover, read_bytes

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise CompsearchError(f"workers must be an integer >= 1, not {workers!r}")
    if files_per_shard < 1:
        raise CompsearchError("files_per_shard must be >= 1")
    start = time.perf_counter()
    chunking = chunking or ChunkingConfig()
    out = Path(shards_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    if (out / SET_FILE).is_file():
        ShardSet(out).check(encoder)  # never mix two encoders' shards in one folder
    skip = skip or {}
    files = []
    for c in discover(paths, **discover_options):
        if not isinstance(c, Candidate):
            continue
        key = os.path.abspath(c.path)
        data = read_bytes(c.path)  # the write path reads and hashes every file too
        if not isinstance(data, bytes) or not data.strip() or skip.get(key) == content_hash(data):
            continue  # unreadable or empty (the write path reports it), or indexed unchanged
        files.append(
            {
                "path": key,
                "kind": c.kind,
                "language": c.language or "",
                "compressed": bool(c.compressed),
            }
        )
    report = EmbedReport(
        shards_dir=str(out), fingerprint=encoder.fingerprint, files=len(files), workers=workers
    )
    entry = encoder_entry(encoder)
    rows: list[dict] = []
    if files:
        # no more files per shard than gives every worker a batch (small corpora)
        files_per_shard = max(1, min(files_per_shard, -(-len(files) // workers)))
        spec = _worker_spec(encoder, out, chunking, gpus_per_worker)
        ray = import_ray()
        started = connect(address, workers)
        try:
            actors = min(workers, -(-len(files) // files_per_shard))  # no idle actors
            rows = _run(ray, files, spec, actors, gpus_per_worker, files_per_shard)
        finally:
            if started:
                ray.shutdown()
    listed = {}
    if (out / SET_FILE).is_file():  # shards of earlier runs stay in the set
        old = ShardSet(out)
        listed = {f: c for f, c in zip(old.files, old.counts) if (out / f).is_file()}
    for r in rows:
        if r["shard"]:
            listed[str(r["shard"])] = int(r["count"])
            report.reused_shards += int(r["reused"])
    manifest = write_set(
        out, entry, chunking.to_dict(), [{"file": f, "count": c} for f, c in listed.items()]
    )
    report.shards, report.vectors = len(listed), manifest["vectors"]
    report.seconds = time.perf_counter() - start
    return report


def _worker_spec(encoder, out: Path, chunking, gpus_per_worker: float) -> dict:
    from .embedders import ExternalEncoder, SentenceTransformerEncoder

    spec = {
        "fingerprint": encoder.fingerprint,
        "chunking": chunking.to_dict(),
        "out": str(out),
        "threads": 1,
        "device": "cuda" if gpus_per_worker else None,
    }
    if isinstance(encoder, SentenceTransformerEncoder):
        return dict(spec, kind="external", source=str(encoder.folder), dtype=None)
    if isinstance(encoder, ExternalEncoder) or not hasattr(encoder, "save"):
        raise CompsearchError(
            f"the Ray path loads the encoder on every worker, and {encoder.name} cannot be "
            f"loaded by name: use a compsearch encoder or a sentence-transformers folder"
        )
    folder = out / ENCODER_DIR
    encoder.save(folder)
    dtype = str(getattr(encoder, "dtype", "float32")).replace("torch.", "")
    return dict(spec, kind="compsearch", source=str(folder), dtype=dtype)


def _run(ray, files: list[dict], spec: dict, workers: int, gpus: float, per_shard: int):
    from ray.data import ActorPoolStrategy

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ds = ray.data.from_items(files, override_num_blocks=max(1, -(-len(files) // per_shard)))
    ds = ds.map_batches(
        _Embedder,
        fn_constructor_kwargs={"spec": spec},
        batch_size=per_shard,
        compute=ActorPoolStrategy(size=workers),
        num_cpus=0 if gpus else 1,
        num_gpus=gpus or None,
        batch_format="numpy",
    )
    try:
        return ds.take_all()
    except Exception as exc:  # noqa: BLE001  (Ray wraps the worker's error in its own types)
        raise CompsearchError(f"the Ray embedding run failed: {_root_cause(exc)}") from None


def _root_cause(exc: BaseException) -> str:
    """The worker's own one-line message out of Ray's wrapping (RayTaskError, SystemException,
    ...): a CompsearchError's text where the chain holds one, else the last line of the first
    exception that says something."""
    import traceback

    text = "".join(traceback.format_exception(exc))
    marker = "CompsearchError: "
    for line in reversed(text.splitlines()):
        if marker in line:
            return line.split(marker, 1)[1].strip()[:300]
    seen: BaseException | None = exc
    while seen is not None:
        lines = [ln.strip() for ln in str(seen).splitlines() if ln.strip()]
        if lines:
            return lines[-1][:300]
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


# ---------------------------------------------------------------- embed, then index
def prepare(
    retriever,
    paths: Sequence[str | os.PathLike],
    shards_dir: str | os.PathLike,
    *,
    chunking=None,
    chunk_tokens: int | None = None,
    overlap: int | None = None,
    ondisk_lists: bool = False,
    **options: Any,
) -> tuple[ShardEncoder, EmbedReport]:
    """Embed what ``retriever.index(paths)`` would encode into shards; returns the encoder that
    serves those vectors (give it to ``Retriever.open(root, encoder=...)``) and the report."""
    from .indexing import check_chunk_budget, resolve_chunking

    manifest = retriever.manifest or {}
    chunking = resolve_chunking(manifest.get("chunking"), chunking, chunk_tokens, overlap)
    encoder = retriever.encoder
    check_chunk_budget(chunking, encoder)
    skip = {}
    if retriever.exists and manifest.get("chunking") == chunking.to_dict():
        store, _ = retriever._open_read()
        skip = store.files()
    report = embed(paths, shards_dir, encoder, chunking=chunking, skip=skip, **options)
    return ShardEncoder(encoder, report.shards_dir, ondisk_lists=ondisk_lists), report


@contextlib.contextmanager
def embedded(
    retriever,
    paths: Sequence[str | os.PathLike],
    *,
    shards_dir: str | os.PathLike | None = None,
    address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float = 0,
    files_per_shard: int = FILES_PER_SHARD,
    ondisk_lists: bool = False,
    **index_options: Any,
) -> Iterator[tuple[Any, EmbedReport]]:
    """Embed on Ray, then yield (a ``Retriever`` on the same index whose encoder serves the
    shards' vectors, the ``EmbedReport``): call its ``index(paths, **index_options)``.

    ``shards_dir``: where the shards go (kept, and reused by a later run); None: a temporary
    folder beside the index, removed on exit. ``ondisk_lists``: a new IVF base of this write
    keeps its lists in ``base-<gen>.ivfdata`` (memory-mapped). ``index_options``: ``Retriever.index``'s.
    """
    from .retriever import Retriever

    discover_options = {k: index_options[k] for k in DISCOVER_OPTIONS if k in index_options}
    root = Path(retriever.root)
    temp = None
    if shards_dir is None:
        root.parent.mkdir(parents=True, exist_ok=True)
        temp = shards_dir = tempfile.mkdtemp(prefix=f".{root.name}.shards-", dir=root.parent)
    try:
        encoder, report = prepare(
            retriever,
            paths,
            shards_dir,
            chunking=index_options.get("chunking"),
            chunk_tokens=index_options.get("chunk_tokens"),
            overlap=index_options.get("overlap"),
            address=address,
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            files_per_shard=files_per_shard,
            ondisk_lists=ondisk_lists,
            **discover_options,
        )
        retriever.close()
        with Retriever.open(root, encoder) as writer:
            yield writer, report
        report.served, report.encoded_here = encoder.served, encoder.encoded
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def index(index_dir: str | os.PathLike, paths: Sequence[str | os.PathLike], *, model=None,
          shards_dir=None, address=None, workers: int = 2, gpus_per_worker: float = 0,
          files_per_shard: int = FILES_PER_SHARD, ondisk_lists: bool = False,
          **index_options: Any):  # fmt: skip
    """``Retriever.open(index_dir, model).index(paths, **index_options)`` with the encoding done
    on a Ray cluster (see ``embedded``); returns (IndexReport, EmbedReport)."""
    from .retriever import Retriever

    with embedded(
        Retriever.open(index_dir, model),
        paths,
        shards_dir=shards_dir,
        address=address,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        files_per_shard=files_per_shard,
        ondisk_lists=ondisk_lists,
        **index_options,
    ) as (writer, report):
        result = writer.index(paths, **index_options)
    return result, report
