"""The filter grammar: operators, typed values, globs relative to the indexed root, hostile input."""

from __future__ import annotations

import numpy as np
import pytest

from compsearch import CompsearchError
from compsearch.filters import compile, parse
from compsearch.store import ChunkRecord, Store

ROOT = "/data/corpus"
ROWS = [  # source, metadata
    (f"{ROOT}/bugs.md", {"year": 2019, "kind": "markdown", "draft": False, "tags": "api"}),
    (
        f"{ROOT}/docs/guide.md",
        {"year": 2021, "kind": "markdown", "draft": True, "author": {"name": "ann"}},
    ),
    (f"{ROOT}/docs/api.py", {"year": 2023, "kind": "python", "score": 0.5}),
    (f"{ROOT}/notes.txt", {"year": "2020", "kind": "text"}),  # a string, not a number
    ("/elsewhere/bugs.md", {"kind": "markdown", "weird key": 1, "q": 'it\'s 100% ;-- "x"'}),
]


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    s.add(
        [
            ChunkRecord(text=f"chunk {i}", source=src, metadata=meta)
            for i, (src, meta) in enumerate(ROWS)
        ],
        np.zeros((len(ROWS), 4), np.float32),
    )
    s.commit()
    yield s
    s.close()


def ids(store, where, roots=(ROOT,)):
    return store.ids_where(where, roots).tolist()


def test_operators_and_typed_values(store):
    assert ids(store, {"year": {"$gte": 2020}}) == [1, 2]  # the string "2020" is not a number
    assert ids(store, {"year": {"$gt": 2019, "$lt": 2023}}) == [1]
    assert ids(store, {"year": {"$lte": 2019}}) == [0]
    assert ids(store, {"year": {"$eq": "2020"}}) == [3]
    assert ids(store, {"year": 2020}) == []
    assert ids(store, {"year": {"$gte": "2000"}}) == [3]  # strings order with strings
    assert ids(store, {"draft": True}) == [1]
    assert ids(store, {"draft": {"$ne": True}}) == [0, 2, 3, 4]  # missing key counts as "not"
    assert ids(store, {"score": {"$lt": 1}}) == [2]
    assert ids(store, {"author.name": "ann"}) == [1]  # nested keys
    assert ids(store, {"kind": {"$in": ["python", "text"]}}) == [2, 3]
    assert ids(store, {"kind": {"$nin": ["markdown"]}}) == [2, 3]
    assert ids(store, {"tags": {"$nin": ["api"]}}) == [1, 2, 3, 4]
    assert ids(store, {"author": None}) == [0, 2, 3, 4]
    assert ids(store, {"id": {"$in": [1, 3]}}) == [1, 3]


def test_and_or(store):
    assert ids(store, {"$or": [{"kind": "python"}, {"year": 2019}]}) == [0, 2]
    assert ids(store, {"$and": [{"kind": "markdown"}, {"year": {"$gte": 2020}}]}) == [1]
    assert ids(
        store, {"$or": [{"$and": [{"kind": "markdown"}, {"draft": False}]}, {"kind": "text"}]}
    ) == [0, 3]
    assert ids(store, {"kind": "markdown", "$or": [{"year": 2019}, {"year": 2021}]}) == [0, 1]


def test_old_style_filters_keep_working(store):
    assert ids(store, {"kind": "markdown"}) == [0, 1, 4]
    assert ids(store, {"kind": ["python", "text"]}) == [2, 3]
    assert ids(store, {"source": f"{ROOT}/docs/*"}) == [1, 2]
    assert ids(store, {"source": f"{ROOT}/docs/*", "kind": "python"}) == [2]
    assert ids(store, {"kind": []}) == []


def test_source_globs_relative_to_the_indexed_root(store):
    assert ids(store, {"source": "bugs.md"}) == [0]  # relative to the root
    assert ids(store, {"source": "bugs.md"}, roots=()) == []  # no roots: absolute only
    assert ids(store, {"source": "/elsewhere/bugs.md"}) == [4]
    assert ids(store, {"source": "*bugs.md"}) == [0, 4]
    assert ids(store, {"source": "docs/*.md"}) == [1]
    assert ids(store, {"source": {"$in": ["docs/*.py", "notes.txt"]}}) == [2, 3]
    assert ids(store, {"source": {"$nin": ["docs/*"]}}) == [0, 3, 4]
    assert ids(store, {"source": {"$ne": "bugs.md"}}) == [1, 2, 3, 4]
    assert ids(store, {"source": "docs/*.md"}, roots=(ROOT + "/",)) == [1]  # trailing slash


def test_hostile_values_are_data(store):
    assert ids(store, {"q": 'it\'s 100% ;-- "x"'}) == [4]
    for value in ["'", "%", "_", "';--", "1 OR 1=1", '") OR (1=1', "*", "[", "\x00"]:
        assert ids(store, {"kind": value}) == []
        assert ids(store, {"kind": {"$in": [value, "python"]}}) == [2]
    assert ids(store, {"source": "' OR 1=1 --"}) == []


def test_huge_in_lists_beyond_the_variable_limit(store):
    many = [f"k{i}" for i in range(1500)] + ["python"]
    assert ids(store, {"kind": {"$in": many}}) == [2]
    assert ids(store, {"kind": {"$nin": many}}) == [0, 1, 3, 4]
    assert ids(store, {"id": {"$in": list(range(3, 40_000))}}) == [3, 4]
    assert ids(store, {"source": {"$in": [f"x{i}/*" for i in range(1500)] + ["notes.txt"]}}) == [3]
    sql, params = compile({"kind": {"$in": many}})
    assert len(params) <= 2


@pytest.mark.parametrize(
    "bad,msg",
    [
        ({"x') OR 1=1 --": 1}, "bad filter key"),
        ({"weird key": 1}, "bad filter key"),
        ({"$.a": 1}, "unknown operator"),
        ({"year": {"$regex": "x"}}, "unknown operator '\\$regex'"),
        ({"year": {"$in": 3}}, "takes a list"),
        ({"year": {"$gt": [1]}}, "single value"),
        ({"year": {"$gt": True}}, "number or a string"),
        ({"year": {"$gt": None}}, "cannot compare with null"),
        ({"year": {}}, "empty operator"),
        ({"$or": {}}, "non-empty list"),
        ({"$and": []}, "non-empty list"),
        ({"$or": ["kind=x"]}, "expected an object"),
        ({"year": {"$eq": 2**70}}, "64-bit"),
        ({"year": float("nan")}, "NaN"),
        ({"year": {"$in": [{"a": 1}]}}, "single value"),
        (42, "expected a dict"),
    ],
)
def test_bad_filters_are_one_line_errors(store, bad, msg):
    with pytest.raises(CompsearchError, match=msg) as err:
        store.ids_where(bad, (ROOT,))
    assert "\n" not in str(err.value)


def test_command_line_grammar():
    assert parse("year>=2020") == {"year": {"$gte": 2020}}
    assert parse("kind=markdown") == {"kind": "markdown"}
    assert parse(["kind=a", "kind=b"]) == {"kind": {"$in": ["a", "b"]}}
    assert parse(["draft!=true", "score<0.5"]) == {
        "$and": [{"draft": {"$ne": True}}, {"score": {"$lt": 0.5}}]
    }
    assert parse('year="2020"') == {"year": "2020"}  # quoted: a string
    assert parse("source=2020.md") == {"source": "2020.md"}  # paths stay strings
    assert parse("note=a=b") == {"note": "a=b"}
    assert parse('{"tags": {"$in": ["api"]}}') == {"tags": {"$in": ["api"]}}
    assert parse([]) is None and parse(None) is None and parse({}) is None
    for bad in ["year", "=x", "year>>1", "{not json", "[1, 2]", "a b=1"]:
        with pytest.raises(CompsearchError, match="bad filter"):
            parse(bad)


def test_api_accepts_the_command_line_grammar(store):
    assert ids(store, "year>=2021") == [1, 2]
    assert ids(store, ["kind=markdown", "source=bugs.md"]) == [0]
