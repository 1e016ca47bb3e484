"""LangChain's own standard test suites and a LlamaIndex round trip against compsearch's adapters."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import (
    EmbeddingsIntegrationTests,  # noqa: E402
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)
from langchain_tests.unit_tests import EmbeddingsUnitTests  # noqa: E402

from compsearch.integrations.langchain import (
    CompsearchEmbeddings,  # noqa: E402
    CompsearchRetriever,
    CompsearchVectorStore,
)
from conftest import make_tiny_base, write_corpus  # noqa: E402


@lru_cache(maxsize=1)
def _tiny() -> str:
    """A tiny random base model (the standard suites construct the classes themselves)."""
    return str(make_tiny_base(Path(tempfile.mkdtemp(prefix="cs-lc-")) / "base"))


@lru_cache(maxsize=1)
def _index() -> str:
    from compsearch import Retriever

    root = Path(tempfile.mkdtemp(prefix="cs-lc-ix-"))
    r = Retriever.open(root / "ix", _tiny())
    r.index([write_corpus(root / "docs")])
    return str(root / "ix")


class TestEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self):
        return CompsearchEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": _tiny()}


class TestEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self):
        return CompsearchEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": _tiny()}


class TestRetrieverIntegration(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self):
        return CompsearchRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"index": _index()}

    @property
    def retriever_query_example(self) -> str:
        return "rotate log file"


class TestVectorStoreIntegration(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path):
        yield CompsearchVectorStore(embedding=self.get_embeddings(), index=tmp_path / "vs")


def test_retriever_documents_carry_citations():
    docs = CompsearchRetriever(index=_index(), k=3).invoke("rotate log file")
    assert len(docs) == 3
    for d in docs:
        assert {"source", "start_line", "end_line", "section", "score", "chunk_id"} <= set(
            d.metadata
        )
        assert Path(d.metadata["source"]).is_file()


def test_vector_store_with_compsearch_embeddings_filters_and_retriever(tmp_path):
    emb = CompsearchEmbeddings(_tiny())
    vs = CompsearchVectorStore.from_texts(
        ["json parse text", "rotate log file", "http request header"],
        emb,
        [{"k": 1}, {"k": 2}, {"k": 2}],
        ids=["a", "b", "c"],
        index=tmp_path / "vs",
    )
    assert [d.id for d in vs.get_by_ids(["c", "a"])] == ["c", "a"]
    hits = vs.similarity_search("log", k=3, filter={"k": 2})
    assert {d.id for d in hits} == {"b", "c"}
    assert len(vs.as_retriever(search_kwargs={"k": 1}).invoke("json")) == 1
    # the index remembers compsearch's encoder, so it reopens without the embedding object
    from compsearch import Retriever

    assert Retriever.open(tmp_path / "vs").count() == 3


def test_llama_index_round_trip():
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore

    from compsearch.integrations.llama_index import CompsearchEmbedding, CompsearchRetriever as LR

    emb = CompsearchEmbedding(_tiny())
    assert len(emb.get_query_embedding("json")) == len(emb.get_text_embedding("json parse")) == 32
    nodes = LR(index=_index(), k=2).retrieve("rotate log file")
    assert len(nodes) == 2 and all(isinstance(n, NodeWithScore) for n in nodes)
    assert nodes[0].score >= nodes[1].score and Path(nodes[0].node.metadata["source"]).is_file()
