"""How the command line shows things: consoles, progress bars, the index report, ranked hits.

Used by ``cli`` and ``demo``; rich is imported only when something is shown, so ``--help`` and
errors stay light.
"""

from __future__ import annotations


def console(stderr: bool = False):
    """A rich console for compsearch's output (stdout, or stderr for progress and notes)."""
    from rich.console import Console

    c = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not c.is_terminal:  # piped: whole lines and whole values, never cut at an assumed width
        c.soft_wrap = True
        c.width = 100_000
    return c


def index_with_progress(retriever, paths, console, disable: bool = False, **options):
    """``Retriever.index`` with rich progress bars on ``console``: the file scan, then the bytes
    of new and changed files chunked and encoded (with a real ETA) and the chunks encoded."""
    with _progress(console, disable) as bar:
        task = bar.add_task("scanning files", total=None)
        state = {"chunks": 0}

        def on_progress(phase, done, total):
            if phase == "scan":
                bar.update(task, completed=done, total=total)
            elif phase == "encoder":
                bar.update(task, description="loading the encoder", completed=0, total=None)
            elif phase == "chunks":
                state["chunks"] = done
                bar.update(task, description=f"indexing ({done:,} chunks embedded)")
            elif phase == "bytes":
                bar.update(
                    task,
                    completed=done,
                    total=max(total, 1),
                    description=f"indexing ({state['chunks']:,} chunks embedded)",
                )

        return retriever.index(paths, progress=on_progress, **options)


def _progress(console, disable: bool):
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
        transient=True,
    )


def print_report(console, report, index_dir, verbose: bool = False) -> None:
    """An ``IndexReport`` as a short table, then the skipped files (all of them with ``verbose``)."""
    from rich.table import Table

    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_row("files indexed (new or changed)", str(report.files_indexed))
    t.add_row("files unchanged", str(report.files_unchanged))
    t.add_row("files removed", str(report.files_removed))
    t.add_row("files skipped", str(len(report.skipped)))
    t.add_row("chunks added / removed", f"{report.chunks_added} / {report.chunks_removed}")
    t.add_row("chunks reused (not re-encoded)", str(report.chunks_reused))
    t.add_row("chunks truncated", str(report.truncated))
    t.add_row(
        "index",
        f"{report.chunks_total} chunks from {report.files_total} files, "
        f"{report.index_type}{' (rebuilt)' if report.rebuilt else ''}",
    )
    t.add_row("time", f"{report.seconds:.1f} s")
    console.print(
        f"[bold]indexed into {index_dir}[/bold]"
        + ("" if report.committed else " [dim](nothing changed)[/dim]")
    )
    console.print(t)
    if report.skipped:
        reasons = ", ".join(f"{n} {r}" for r, n in report.skipped_by_reason().items())
        console.print(f"skipped: {reasons}")
        shown = (
            report.skipped
            if verbose
            else [s for s in report.skipped if s[1] not in ("hidden", "ignored by .gitignore")][:10]
        )
        for path, reason in shown:
            console.print(f"  [dim]{path}[/dim]: {reason}")
        if not verbose and len(report.skipped) > len(shown):
            console.print("  [dim](-v lists every skipped file)[/dim]")


def print_results(console, text, hits) -> None:
    """Ranked hits with their citations; snippets are cut to 200 characters on a terminal only
    (piped into a file or another program, every hit's full text is printed)."""
    from rich.markup import escape

    console.print(f"[bold]{escape(text)}[/bold]")
    if not hits:
        console.print("  no results")
    full = not console.is_terminal
    for rank, h in enumerate(hits, 1):
        where = h.source + (f":{h.start_line}-{h.end_line}" if h.span else "")
        section = f"  [dim]§ {escape(h.section)}[/dim]" if h.section else ""
        snippet = " ".join(h.text.split())
        if not full:
            snippet = snippet[:200] + ("…" if len(snippet) > 200 else "")
        console.print(
            f"{rank:>2}. [cyan]{h.score:.3f}[/cyan]  [green]{escape(where)}[/green]{section}"
        )
        console.print(f"    {escape(snippet)}")
