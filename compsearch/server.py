"""``compsearch serve``: one process that keeps the encoder and the index loaded and answers HTTP.

A thin layer over ``Retriever`` (FastAPI + uvicorn, ``pip install 'compsearch[server]'``):

| method and path        | body (JSON)                                             | answer                     |
| ---------------------- | ------------------------------------------------------- | -------------------------- |
| ``GET /health``        |                                                         | status, chunks, encoder    |
| ``POST /search``       | ``query``, ``k``, ``where``, ``rerank``, ``mode``       | ``results`` (citations)    |
| ``POST /add``          | ``texts``, ``metadata``, ``ids``                        | ``ids``                    |
| ``POST /get``          | ``ids`` or ``where``, ``limit``                         | ``results``                |
| ``POST /delete``       | ``ids`` or ``where``                                    | ``deleted``                |
| ``POST /v1/embeddings``| OpenAI's: ``input`` (string or list), ``model``         | OpenAI's embeddings object |

Errors a client can fix answer 400 with ``{"error": "..."}`` (one line, like the CLI). It binds to
127.0.0.1 by default: there is no authentication, so expose it only behind something that has.
The ``Retriever`` is shared by the server's worker threads (it is thread-safe).
"""

# no ``from __future__ import annotations``: FastAPI reads the request models defined in create_app

import inspect
from typing import Any

from .errors import CompsearchError


def create_app(retriever, *, model_name: str | None = None):
    """A FastAPI app serving ``retriever`` (an open ``compsearch.Retriever``)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
        from pydantic import BaseModel, Field
    except ImportError:
        raise CompsearchError(
            "the server needs FastAPI and uvicorn: pip install 'compsearch[server]'"
        ) from None

    class SearchBody(BaseModel):
        query: str
        k: int = Field(5, ge=1, le=1000)
        where: dict | None = None
        rerank: str | None = "auto"
        mode: str | None = None

    class AddBody(BaseModel):
        texts: list[str]
        metadata: list[dict] | dict | None = None
        ids: list[str] | None = None

    class SelectBody(BaseModel):
        ids: list[str | int] | None = None
        where: dict | None = None
        limit: int | None = Field(None, ge=1)

    class EmbeddingsBody(BaseModel):
        input: str | list[str]
        model: str | None = None
        encoding_format: str | None = "float"

    app = FastAPI(
        title="compsearch",
        version=_version(),
        description="Search and RAG over your documents with an LLM2Comp encoder",
    )
    name = model_name or "compsearch"

    @app.exception_handler(CompsearchError)
    async def _user_error(request: Request, exc: CompsearchError):  # noqa: ARG001
        return JSONResponse(status_code=400, content={"error": str(exc)})

    @app.exception_handler(TypeError)
    async def _type_error(request: Request, exc: TypeError):  # noqa: ARG001
        return JSONResponse(status_code=400, content={"error": str(exc)})

    @app.get("/health")
    def health() -> dict:
        enc = retriever.manifest["encoder"] if retriever.exists else {}
        return {
            "status": "ok",
            "index": str(retriever.root),
            "chunks": retriever.count(),
            "encoder": enc.get("name"),
            "fingerprint": enc.get("fingerprint"),
        }

    @app.post("/search")
    def search(body: SearchBody) -> dict:
        if not retriever.exists:
            return {"query": body.query, "results": []}
        kwargs: dict[str, Any] = {
            "k": body.k,
            "where": body.where,
            "rerank": None if body.rerank in (None, "none") else body.rerank,
        }
        if body.mode is not None:
            if "mode" not in inspect.signature(retriever.search).parameters:
                raise CompsearchError("this compsearch has no search modes")
            kwargs["mode"] = body.mode
        hits = retriever.search(body.query, **kwargs)
        return {"query": body.query, "results": [h.to_dict() for h in hits]}

    @app.post("/add")
    def add(body: AddBody) -> dict:
        return {"ids": retriever.add(body.texts, body.metadata, ids=body.ids)}

    @app.post("/get")
    def get(body: SelectBody) -> dict:
        return {
            "results": [
                h.to_dict() for h in retriever.get(body.ids, where=body.where, limit=body.limit)
            ]
        }

    @app.post("/delete")
    def delete(body: SelectBody) -> dict:
        return {"deleted": retriever.delete(body.ids, where=body.where)}

    @app.post("/v1/embeddings")
    def embeddings(body: EmbeddingsBody) -> dict:
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if not texts or any(not t for t in texts):
            raise CompsearchError("input must be a non-empty string or a list of them")
        if body.encoding_format not in (None, "float"):
            raise CompsearchError("only encoding_format 'float' is supported")
        enc = retriever.encoder
        vecs = enc.encode(texts, kind="document")
        tokens = sum(enc.count_tokens(texts)) if hasattr(enc, "count_tokens") else 0
        return {
            "object": "list",
            "model": body.model or name,
            "data": [
                {"object": "embedding", "index": i, "embedding": v.tolist()}
                for i, v in enumerate(vecs)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    return app


def serve(
    index: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str | None = None,
    log_level: str = "warning",
) -> None:
    """Open the index (and its encoder) once, then serve until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise CompsearchError(
            "the server needs FastAPI and uvicorn: pip install 'compsearch[server]'"
        ) from None
    from .retriever import Retriever

    retriever = Retriever.open(index, model)
    retriever.encoder  # load before the first request, not during it
    app = create_app(retriever)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _version() -> str:
    from . import __version__

    return __version__
