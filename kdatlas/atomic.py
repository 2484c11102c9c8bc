"""Write several files so that either all of them change or none does.

Each new text goes to a temporary file in the target's own directory (so the
final ``os.replace`` is a rename on one file system, atomic per file); only
when every temporary file is written are they moved into place. A failure
before that point removes the temporary files and leaves the originals as
they were.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path


def _write_temporary(path: Path, text: str) -> Path:
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():  # keep the original's permissions (mkstemp creates 0600)
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        else:
            os.chmod(temporary, 0o644)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def replace_files(contents: Mapping[Path, str]) -> None:
    """Write every ``path -> text`` through temporary files, then move them all into place."""
    temporaries: dict[Path, Path] = {}
    try:
        for path, text in contents.items():
            temporaries[path] = _write_temporary(Path(path), text)
    except BaseException:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
        raise
    for path, temporary in temporaries.items():
        os.replace(temporary, path)
