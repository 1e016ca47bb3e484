"""Maintenance of index directories: inspect, verify, rebuild (change type / retrain), compact.

An optional layer on top of the library, like FAISS's ``contrib``: the core (``Retriever``,
``indexdir``, ``index``) never imports it, and it uses only their public functions. The command
line is ``compsearch inspect|verify|rebuild|compact|choose`` (``compsearch.cli``).
"""

from .operations import compact, inspect, rebuild, verify

__all__ = ["compact", "inspect", "rebuild", "verify"]
