"""Building and maintaining compsearch indexes beyond the simple case.

- ``choose``: which FAISS index type suits a corpus size, and training one on a sample.
- ``maintain``: rebuild (change type, retrain), compact, inspect and verify an index directory.

Command line: ``python -m index_tools {inspect,verify,rebuild,compact,choose} ...``.
"""
