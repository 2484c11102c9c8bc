"""Compare implementations with their authors' code and record the errors.

    python scripts/verify_official.py [--ids kd dkd ...] --official-dir DIR [--clone]

For every taxonomy implementation whose ``authors_code`` names a repository (all of them,
or those of ``--ids``), this loads the named symbol from the repository's file at the
named commit — only that definition and what it needs (``kdatlas.official.load_symbol``)
— and runs it and ours, as ``scripts/official_adapters.py`` declares, on seeded inputs in
float64 and float32, then writes ``tests/official_runs/<id>.json``.

``DIR`` holds local copies of the repositories, one folder per repository:
``DIR/<owner>+<name>`` (or ``.../repo`` inside it) or ``DIR/<owner>/<name>``; a git
repository (bare or not) is read at the commit, plain files are taken as they are and the
record says the commit was not checked. ``--clone`` clones a missing one (network).

Exit status: 0 when every comparison ran and found equality within float32 noise (or the
difference its ``known_difference`` declares), 1 when one differs unexplained (recorded
anyway, ``equal: false``), 2 when one could not run.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from kdatlas.loader import load  # noqa: E402
from kdatlas.models import AuthorsCode  # noqa: E402
from kdatlas.official import (  # noqa: E402
    RECORD_DIR,
    clone,
    compare,
    find_checkout,
    load_symbol,
    make_record,
    short_float,
    write_record,
)


def main(argv: list[str] | None = None, adapters: dict | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", nargs="*", help="implementation ids (default: all declared)")
    parser.add_argument("--official-dir", type=Path, required=True)
    parser.add_argument("--clone", action="store_true", help="clone missing repositories")
    parser.add_argument(
        "--records-dir", type=Path, help="where to write (default: tests/official_runs/)"
    )
    args = parser.parse_args(argv)

    if adapters is None:
        from official_adapters import ADAPTERS

        adapters = ADAPTERS
    import torch

    torch.set_num_threads(1)
    kb = load(root)
    declared = {
        i.id: i for _a, _l, i in kb.implementations() if isinstance(i.authors_code, AuthorsCode)
    }
    ids = args.ids or sorted(declared)
    unknown = [i for i in ids if i not in declared]
    if unknown:
        parser.error(f"no authors_code with a repository declared for: {', '.join(unknown)}")
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    status = 0
    for implementation_id in ids:
        implementation = declared[implementation_id]
        code = implementation.authors_code
        adapter = adapters.get(implementation_id)
        if adapter is None:
            print(f"{implementation_id}: no adapter in scripts/official_adapters.py", flush=True)
            status = 2
            continue
        checkout = find_checkout(args.official_dir, code.repository)
        if checkout is None and args.clone:
            checkout = clone(args.official_dir, code.repository)
        if checkout is None:
            print(f"{implementation_id}: no copy of {code.repository} in {args.official_dir}")
            status = 2
            continue
        commit_checked = checkout.has_commit(code.commit)
        if checkout.git_dir is not None and not commit_checked:
            print(f"{implementation_id}: commit {code.commit} not in {checkout.path}")
            status = 2
            continue
        try:
            official = load_symbol(
                checkout, code.commit, code.file, code.symbol, code.lines, adapter.also
            )
            result = compare(adapter, official)
        except Exception:  # report and go on with the next
            print(f"{implementation_id}: could not compare\n{traceback.format_exc()}", flush=True)
            status = 2
            continue
        record = make_record(root, implementation, commit_checked, result, date)
        path = write_record(args.records_dir or root / RECORD_DIR, record)
        word = (
            "equal"
            if record.equal
            else "differs, as declared"
            if record.known_difference
            else "DIFFERENT"
        )
        print(
            f"{implementation_id}: {word}; max rel. error float64 "
            f"{short_float(record.max_relative_error_float64)}, float32 "
            f"{short_float(record.max_relative_error)} (noise floor "
            f"{short_float(record.float32_noise_floor)}) -> {path}",
            flush=True,
        )
        if not record.equal and not record.known_difference:
            status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
