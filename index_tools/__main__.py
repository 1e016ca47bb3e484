"""``python -m index_tools``: inspect, verify, rebuild, compact and choose for compsearch indexes."""

from __future__ import annotations

import json

import click

from compsearch.cli import INDEX_TYPES, friendly_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Maintain compsearch index directories."""


@main.command()
@click.argument("index_dir", type=click.Path())
@friendly_errors
def inspect(index_dir):
    """Sizes, type and counts of an index (JSON)."""
    from .maintain import inspect as run

    click.echo(json.dumps(run(index_dir), indent=2))


@main.command()
@click.argument("index_dir", type=click.Path())
@click.option("--sample", default=200, show_default=True, help="Vectors checked for self-recall.")
@friendly_errors
def verify(index_dir, sample):
    """Check integrity; exit 1 when a problem is found."""
    from .maintain import verify as run

    problems = run(index_dir, sample=sample)
    for p in problems:
        click.echo(f"problem: {p}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo("ok")


@main.command()
@click.argument("index_dir", type=click.Path())
@click.option("--type", "kind", type=click.Choice(INDEX_TYPES), default=None,
              help="New index type (default: keep the current choice).")
@click.option("--nlist", type=int, default=None)
@click.option("--nprobe", type=int, default=None)
@click.option("--pq-m", type=int, default=None)
@click.option("--hnsw-m", type=int, default=None)
@click.option("--ef-search", type=int, default=None)
@friendly_errors
def rebuild(index_dir, kind, nlist, nprobe, pq_m, hnsw_m, ef_search):
    """Rebuild the vector index from stored vectors (no re-encoding)."""
    from .maintain import rebuild as run

    m = run(index_dir, kind, nlist=nlist, nprobe=nprobe, pq_m=pq_m, hnsw_m=hnsw_m, ef_search=ef_search)
    click.echo(f"rebuilt: {m['index']['factory']}, {m['index']['ntotal']} vectors, generation {m['generation']}")


@main.command()
@click.argument("index_dir", type=click.Path())
@friendly_errors
def compact(index_dir):
    """Reclaim space left by deletions."""
    from .maintain import compact as run

    m = run(index_dir)
    click.echo(f"compacted: {m['index']['ntotal']} vectors, generation {m['generation']}")


@main.command()
@click.argument("n", type=int)
@click.option("--dim", default=576, show_default=True)
def choose(n, dim):
    """Which index type and parameters suit N vectors."""
    from .choose import choose_spec

    spec = choose_spec(n, dim)
    click.echo(json.dumps(dict(spec.to_dict(), factory=spec.factory(dim)), indent=2))


if __name__ == "__main__":
    main()
