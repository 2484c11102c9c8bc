"""The ``kdatlas`` command: check, format, add to, enrich, count and export the knowledge base.

Every problem is printed on one line as ``path:line: error|warning: message``
(paths relative to the repository root) and bad data never produces a
traceback: commands exit 1 when they find errors and 2 on bad usage.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from kdatlas.loader import find_root, is_root
from kdatlas.problems import Problem, Severity

app = typer.Typer(
    name="kdatlas",
    help="Check, format, add to, count and export the KD Atlas knowledge base.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclass
class Options:
    root: Path | None = None


@app.callback()
def main(
    ctx: typer.Context,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Repository root (default: the current directory or its nearest parent "
            "holding taxonomy/ and bib/).",
            file_okay=False,
        ),
    ] = None,
) -> None:
    ctx.obj = Options(root=root)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def resolve_root(ctx: typer.Context) -> Path:
    """The ``--root`` given, or the nearest directory up from here holding taxonomy/ and bib/."""
    given = ctx.obj.root if ctx.obj else None
    if given is not None:
        if not is_root(given):
            raise _fail(f"{given}: error: not a KD Atlas root (no taxonomy/ and bib/ there)", 2)
        return given.resolve()
    found = find_root()
    if found is None:
        raise _fail(
            f"{Path.cwd()}: error: no taxonomy/ and bib/ here or in a parent; use --root PATH", 2
        )
    return found


def _print_problems(problems: list[Problem], *, err: bool = False) -> None:
    for problem in problems:
        typer.echo(str(problem), err=err)


def _count(problems: list[Problem]) -> tuple[int, int]:
    errors = sum(p.severity is Severity.ERROR for p in problems)
    return errors, len(problems) - errors


# --------------------------------------------------------------------------- check


@app.command()
def check(
    ctx: typer.Context,
    imports: Annotated[
        bool,
        typer.Option(
            "--imports/--no-imports",
            help="Import every implementation object (slow: loads torch). --no-imports skips it.",
        ),
    ] = True,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
) -> None:
    """Validate the taxonomy and the bibliography; print every problem as path:line."""
    from kdatlas.checks import check as run_checks

    root = resolve_root(ctx)
    problems = run_checks(root, imports=imports)
    _print_problems(problems)
    errors, warnings = _count(problems)
    typer.echo(f"kdatlas check: {errors} error(s), {warnings} warning(s)", err=True)
    if errors or (strict and warnings):
        raise typer.Exit(1)


# --------------------------------------------------------------------------- fmt


@app.command()
def fmt(
    ctx: typer.Context,
    check_only: Annotated[
        bool, typer.Option("--check", help="Change nothing; list files that would change, exit 1.")
    ] = False,
) -> None:
    """Rewrite taxonomy/*.yaml and bib/*.bib in their canonical form."""
    from kdatlas.fmt import format_tree

    root = resolve_root(ctx)
    report = format_tree(root, write=not check_only)
    _print_problems(report.problems)
    verb = "would reformat" if check_only else "reformatted"
    for path in report.changed:
        typer.echo(f"{verb} {path}")
    if report.problems or (check_only and report.changed):
        raise typer.Exit(1)


# --------------------------------------------------------------------------- add


@app.command()
def add(
    ctx: typer.Context,
    to: Annotated[
        list[str],
        typer.Option(
            "--to", help="area/leaf or area/leaf/topic to file the paper under (repeatable)."
        ),
    ],
    bib: Annotated[
        Path | None,
        typer.Option(
            "--bib", help="Read the BibTeX entry from FILE (default: stdin).", dir_okay=False
        ),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Title (instead of a BibTeX entry).")] = None,
    year: Annotated[str | None, typer.Option(help="Year of publication.")] = None,
    url: Annotated[str | None, typer.Option(help="Link to the paper (http or https).")] = None,
    author: Annotated[
        list[str] | None, typer.Option(help="An author, 'First Last' (repeatable, or 'A and B').")
    ] = None,
    venue: Annotated[str | None, typer.Option(help="Venue, e.g. 'CVPR 2022' or 'arXiv'.")] = None,
    code: Annotated[str | None, typer.Option(help="Link to the authors' code.")] = None,
    doi: Annotated[str | None, typer.Option(help="DOI, e.g. 10.1109/CVPR.2022.01165.")] = None,
    into: Annotated[
        Path, typer.Option("--into", help="Bib file to add to, from the repository root.")
    ] = Path("bib/kd.bib"),
) -> None:
    """Add a paper (BibTeX on stdin, --bib FILE, or --title/--year/--url) to leaves or topics."""
    from kdatlas.add import (
        AddError,
        Target,
        add_paper,
        entry_from_bibtex,
        entry_from_fields,
        house_style,
        pending_stdin,
    )
    from kdatlas.loader import read_bibliography

    root = resolve_root(ctx)
    from_fields = any(v is not None for v in (title, year, url, venue, code, doi)) or bool(author)
    if from_fields and bib is not None:
        raise _fail("error: give either --bib or --title/--year/--url, not both", 2)
    if from_fields and pending_stdin(sys.stdin).strip():
        raise _fail(
            "error: got a BibTeX entry on stdin and --title/--year/--url; give one of them, "
            "not both (put the url in the entry)",
            2,
        )
    notes: list[str] = []
    try:
        targets = [Target.parse(item) for item in to]
        taken = {entry.key for entry in read_bibliography(root)[0]}
        if from_fields:
            entry = entry_from_fields(
                title=title or "",
                year=year or "",
                url=url or "",
                authors=author or [],
                venue=venue,
                code=code,
                doi=doi,
                taken=taken,
            )
        else:
            entry, notes = house_style(entry_from_bibtex(*_read_snippet(bib)), taken)
        result = add_paper(root, entry, targets, bib_file=into)
    except AddError as error:
        _print_problems(error.problems, err=True)
        raise typer.Exit(1) from None
    for note in notes:
        typer.echo(f"note: {note}")
    where = ", ".join(str(target) for target in targets)
    typer.echo(f"added {result.key} under {where}")
    for path in result.files:
        typer.echo(f"wrote {path}")


def _read_snippet(bib: Path | None) -> tuple[str, Path]:
    from kdatlas.limits import MAX_FILE_BYTES, read_bounded

    if bib is not None:
        text, problems = read_bounded(bib, bib)
        if text is None:
            raise _fail(str(problems[0]), 2)
        return text, bib
    if sys.stdin is None or sys.stdin.isatty():
        raise _fail("error: give a BibTeX entry on stdin, --bib FILE, or --title/--year/--url", 2)
    return sys.stdin.read(MAX_FILE_BYTES + 1), Path("<stdin>")  # parse_bib refuses a longer one


# --------------------------------------------------------------------------- stats


@app.command()
def stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    missing_authors: Annotated[
        bool, typer.Option("--missing-authors", help="List the keys of entries without authors.")
    ] = False,
) -> None:
    """Count papers per area, leaf, topic and year; implementations; coverage of fields."""
    from kdatlas.loader import load_with_problems
    from kdatlas.stats import compute_stats

    root = resolve_root(ctx)
    kb, problems = load_with_problems(root)
    errors, _ = _count(problems)
    if kb is None:
        _print_problems(problems, err=True)
        raise typer.Exit(1)
    if errors:
        typer.echo(f"note: {errors} error(s) in the data; run 'kdatlas check'", err=True)
    figures = compute_stats(kb)
    if as_json:
        typer.echo(json.dumps(figures, indent=2, ensure_ascii=False))
        return
    _print_stats_tables(figures, missing_authors)


def _print_stats_tables(figures: dict, list_missing: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    summary = Table(title="KD Atlas", show_header=False)
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    summary.add_row("papers (memberships)", str(figures["papers"]))
    summary.add_row("unique papers filed", str(figures["unique_papers"]))
    summary.add_row("bib entries", str(figures["bib_entries"]))
    summary.add_row("leaves", str(figures["leaves"]))
    summary.add_row("implementations", str(figures["implementations"]))
    summary.add_row("notebooks (leaves with one)", str(figures["notebooks"]))
    summary.add_row("further notebooks of a leaf", str(figures["further_notebooks"]))
    surveys = figures["surveys"]
    summary.add_row("survey followed", surveys["survey"] or "-")
    summary.add_row("papers its authors ask to cite", str(surveys["cite"]))
    summary.add_row("earlier surveys listed", str(surveys["existing"]))
    for name, share in figures["coverage"].items():
        summary.add_row(
            f"with {name}", f"{share['count']}/{share['total']} ({share['percent']:.1f}%)"
        )
    summary.add_row("without authors", str(figures["missing_authors"]["count"]))
    console.print(summary)

    tree = Table(title="Papers per area, leaf and topic")
    for column in ("area", "leaf", "topic", "papers", "impls", "notebook"):
        tree.add_column(column, justify="right" if column in ("papers", "impls") else "left")
    for area in figures["areas"]:
        tree.add_row(area["id"], "", "", str(area["papers"]), "", "", style="bold")
        for leaf in area["leaves"]:
            notebook = "yes" if leaf["notebook"] else "-"
            tree.add_row(
                "", leaf["id"], "", str(leaf["papers"]), str(leaf["implementations"]), notebook
            )
            for topic in leaf["topics"]:
                tree.add_row("", "", topic["id"], str(topic["papers"]), "", "")
    console.print(tree)

    years = Table(title="Bib entries per year")
    years.add_column("year")
    years.add_column("papers", justify="right")
    for year, count in figures["years"].items():
        years.add_row(year, str(count))
    console.print(years)
    if list_missing:
        for key in figures["missing_authors"]["keys"]:
            typer.echo(key)


# --------------------------------------------------------------------------- enrich


@app.command()
def enrich(
    ctx: typer.Context,
    keys: Annotated[
        list[str] | None,
        typer.Option("--keys", help="Only these bib keys (repeatable, or comma-separated)."),
    ] = None,
    missing: Annotated[
        str,
        typer.Option(
            "--missing", help="Which fields to fill: a comma-separated subset of authors,doi,arxiv."
        ),
    ] = "authors,doi,arxiv",
    contact: Annotated[
        str | None,
        typer.Option(
            "--contact",
            envvar="KDATLAS_CONTACT",
            help="Your e-mail address, sent to OpenAlex (mailto) and Crossref (User-Agent) as "
            "they ask of clients.",
        ),
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the changes (default: only print the diff).")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Also replace fields already set when a service differs."),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for one answer.", min=0.1)
    ] = 20.0,
) -> None:
    """Look up missing authors, DOIs and arXiv ids in OpenAlex, Crossref and arXiv; print the
    changes as a diff of bib/*.bib, write them with --apply."""
    from kdatlas import enrich as enriching

    root = resolve_root(ctx)
    try:
        fields = enriching.parse_missing(missing)
    except ValueError as error:
        raise _fail(f"error: {error}", 2) from None
    if contact is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", contact.strip()):
        raise _fail(f"error: --contact takes an e-mail address, not {contact!r}", 2)
    wanted_keys = [key.strip() for item in keys or [] for key in item.split(",") if key.strip()]
    settings = enriching.Settings.from_environment(
        contact=contact.strip() if contact else None, timeout=timeout
    )
    client = enriching.Client(settings, root / enriching.CACHE_DIR)
    if contact is None:
        typer.echo(
            "note: no --contact (or KDATLAS_CONTACT) given: OpenAlex and Crossref ask clients "
            "for an e-mail address",
            err=True,
        )
    try:
        plan = enriching.plan(
            root,
            client,
            keys=wanted_keys or None,
            fields=fields,
            force=force,
        )
    except enriching.EnrichError as error:
        _print_problems(error.problems, err=True)
        raise typer.Exit(2 if isinstance(error, enriching.UnknownKeys) else 1) from None
    except enriching.NoNetwork as error:
        raise _fail(f"kdatlas enrich: error: {error}", 1) from None
    for line in enriching.report_lines(plan):
        typer.echo(line, err=True)
    typer.echo(plan.diff(), nl=False)
    changes = plan.changes
    entries = len({change.key for change in changes})
    looked = len(plan.outcomes)
    header = (
        f"kdatlas enrich: {looked} entr{'y' if looked == 1 else 'ies'} looked up "
        f"({plan.requests} request(s) sent, the rest answered from the cache)"
    )
    summary = f"{len(changes)} change(s) to {entries} entr{'y' if entries == 1 else 'ies'}"
    if apply and changes:
        for path in plan.apply():
            typer.echo(f"wrote {path.as_posix()}", err=True)
        typer.echo(f"{header}; applied {summary}", err=True)
    elif changes:
        typer.echo(f"{header}; proposed {summary}; --apply writes them", err=True)
    else:
        typer.echo(f"{header}; no changes proposed", err=True)
    if plan.failed:
        typer.echo(
            "kdatlas enrich: some lookups failed (see the warnings); answers are cached, so "
            "running again asks only those",
            err=True,
        )
        raise typer.Exit(1)


# --------------------------------------------------------------------------- export


class ExportFormat(StrEnum):
    json = "json"
    bib = "bib"


@app.command()
def export(
    ctx: typer.Context,
    format: Annotated[
        ExportFormat, typer.Option("--format", help="json or bib.")
    ] = ExportFormat.json,
    leaf: Annotated[
        str | None,
        typer.Option("--leaf", help="Only this leaf's papers (bib only), e.g. sources/logit."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write to FILE instead of stdout.", dir_okay=False),
    ] = None,
) -> None:
    """Export the knowledge base as JSON (areas, leaves, topics, papers) or BibTeX."""
    from kdatlas.export import export_bib, export_json
    from kdatlas.loader import load
    from kdatlas.problems import KnowledgeBaseError

    root = resolve_root(ctx)
    if leaf is not None and format is not ExportFormat.bib:
        raise _fail("error: --leaf works with --format bib", 2)
    try:
        kb = load(root)
    except KnowledgeBaseError as error:
        _print_problems(error.problems, err=True)
        raise typer.Exit(1) from None
    if format is ExportFormat.json:
        text = export_json(kb)
    else:
        try:
            text = export_bib(kb, leaf)
        except KeyError:
            raise _fail(
                f"error: no leaf '{leaf}' (write area/leaf, e.g. sources/logit)", 2
            ) from None
    if output is None:
        typer.echo(text, nl=False)
    else:
        from kdatlas.atomic import replace_files

        replace_files({output: text})
        typer.echo(f"wrote {output}", err=True)


# --------------------------------------------------------------------------- schema


@app.command()
def schema(
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Write the taxonomy schema here instead (default: every schema in "
            "kdatlas/schemas/).",
            dir_okay=False,
        ),
    ] = None,
    check_only: Annotated[
        bool, typer.Option("--check", help="Exit 1 if a file differs from a fresh generation.")
    ] = False,
) -> None:
    """Write the JSON Schemas of the taxonomy files (taxonomy/<area>.yaml, taxonomy/surveys.yaml),
    of bib/provenance.yaml and of benchmarks/reported/*.yaml, generated from the pydantic models."""
    from kdatlas.atomic import replace_files
    from kdatlas.export import generated_schemas, schema_text, taxonomy_json_schema

    if output is not None:
        targets = {output: schema_text(taxonomy_json_schema())}
    else:
        targets = {path: schema_text(schema) for path, schema in generated_schemas().items()}
    stale = {
        target: text
        for target, text in targets.items()
        if (target.read_text(encoding="utf-8") if target.is_file() else None) != text
    }
    if check_only:
        if stale:
            raise _fail(f"{next(iter(stale))}: error: out of date; run 'kdatlas schema'", 1)
        return
    if stale:
        replace_files(stale)
        for target in stale:
            typer.echo(f"wrote {target}")


# --------------------------------------------------------------------------- new

new_app = typer.Typer(no_args_is_help=True)
app.add_typer(new_app, name="new")


@new_app.callback()
def new() -> None:
    """Start something from a template: 'kdatlas new implementation'."""


class ImplementationKind(StrEnum):
    loss = "loss"
    procedure = "procedure"


class LossInputs(StrEnum):
    logits = "logits"
    features = "features"
    preact_features = "preact_features"
    embeddings = "embeddings"


@new_app.command("implementation")
def new_implementation(
    ctx: typer.Context,
    leaf: Annotated[str, typer.Option("--leaf", help="area/leaf, e.g. sources/logit.")],
    implementation_id: Annotated[
        str, typer.Option("--id", help="Slug of the method, unique over the taxonomy (e.g. dkd).")
    ],
    paper: Annotated[
        list[str], typer.Option("--paper", help="Bib key of the paper implemented (repeatable).")
    ],
    class_name: Annotated[
        str | None, typer.Option("--class", help="Class name (default: from the id, e.g. DKDLoss).")
    ] = None,
    kind: Annotated[
        ImplementationKind,
        typer.Option(help="loss (a DistillationLoss) or procedure (a DistillationProcedure)."),
    ] = ImplementationKind.loss,
    inputs: Annotated[
        LossInputs | None, typer.Option(help="What a loss reads (default: logits).")
    ] = None,
    needs_target: Annotated[
        bool, typer.Option("--needs-target", help="The loss also takes the labels.")
    ] = False,
    title: Annotated[
        str | None, typer.Option(help="Title (default: e.g. 'DKD (Zhao et al., 2022)').")
    ] = None,
) -> None:
    """Write a method file, its test stubs and its taxonomy entry from the templates."""
    from kdatlas.scaffold import Request, ScaffoldError, new_implementation, next_steps

    root = resolve_root(ctx)
    request = Request(
        leaf=leaf,
        id=implementation_id,
        papers=paper,
        class_name=class_name,
        kind=kind.value,
        inputs=inputs.value if inputs is not None else None,
        needs_target=needs_target,
        title=title,
    )
    try:
        scaffold = new_implementation(root, request)
    except ScaffoldError as error:
        raise _fail(str(error.problem)) from None
    for path in scaffold.created:
        typer.echo(f"wrote {path.as_posix()}")
    typer.echo(f"added '{implementation_id}' ({scaffold.object_path}) to {scaffold.taxonomy_file}")
    for note in scaffold.notes:
        typer.echo(f"note: {note}")
    typer.echo("next steps:")
    for number, step in enumerate(next_steps(scaffold), start=1):
        typer.echo(f"  {number}. {step}")


# --------------------------------------------------------------------------- import-markdown


def _register_importer() -> None:
    """The survey import (a one-time migration, ``kdatlas/importers/survey.py``) as a command.
    An error importing it is a bug of the tool: it propagates, never hidden."""
    from kdatlas.importers.survey import import_markdown_command

    app.command("import-markdown")(import_markdown_command)


_register_importer()
