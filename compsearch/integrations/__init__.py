"""Adapters that make compsearch a drop-in for RAG frameworks (each imported only when used).

- ``compsearch.integrations.langchain``: ``CompsearchEmbeddings``, ``CompsearchRetriever``,
  ``CompsearchVectorStore`` (``pip install 'compsearch[langchain]'``);
- ``compsearch.integrations.llama_index``: ``CompsearchEmbedding``, ``CompsearchRetriever``
  (``pip install 'compsearch[llama-index]'``).

The core library never imports this package; each module imports its framework at import time
and says how to install it when it is missing.
"""
