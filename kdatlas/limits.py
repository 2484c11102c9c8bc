"""The limits on every contributed file, in one place, and the bounded reader that applies them.

Taxonomy and BibTeX files come from pull requests, so they are read as untrusted input:
whatever a file holds, ``check``, ``fmt``, ``add``, ``export`` and the site build answer
in bounded time and memory. Each limit sits far above what the real data needs (measured
on this repository when the limits were chosen, see the comments), so only a hostile or
broken file ever meets one:

* a file holds at most :data:`MAX_FILE_BYTES` bytes (read no further than that);
* YAML collections nest at most :data:`MAX_NESTING_DEPTH` deep, and so do braces inside a
  BibTeX field value;
* one YAML scalar or BibTeX field value holds at most :data:`MAX_FIELD_CHARS` characters;
* YAML anchors, aliases and tags are refused outright (the schema needs none, and aliases
  are what make a few hundred bytes expand exponentially: "billion laughs").

Text shown on the site must not hold control characters (:data:`FORBIDDEN_CHARACTERS`):
C0 and C1 controls other than tab, newline and carriage return, DEL, and the Unicode
bidirectional controls of the "Trojan Source" class (embeddings, overrides, isolates and
the invisible direction marks), which can make text read differently from what it is.
"""

from __future__ import annotations

import re
from pathlib import Path

from kdatlas.problems import Problem

# Real data when chosen: the largest file is bib/kd.bib, 306,281 bytes (taxonomy files at
# most 16,856). Split the bibliography into more bib/*.bib files long before this.
MAX_FILE_BYTES = 2 * 1024 * 1024
# Real data: taxonomy collections nest 6 deep (area > leaves > leaf > topics > topic >
# papers); BibTeX values hold no braces inside their outer delimiters.
MAX_NESTING_DEPTH = 20
# Real data: the longest YAML scalar is 436 characters (a summary; the model caps summaries
# at 1,500), the longest BibTeX value 489 (an author list). Below Python's 4,300-digit
# limit on int(), so no scalar can make the YAML constructor raise.
MAX_FIELD_CHARS = 4000

FORBIDDEN_CHARACTERS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # C0 (but \t \n \r), DEL, C1
    "\u061c\u200e\u200f"  # bidi marks: ARABIC LETTER MARK, LEFT-TO-RIGHT / RIGHT-TO-LEFT MARK
    "\u202a-\u202e"  # bidi embeddings and overrides (LRE, RLE, PDF, LRO, RLO)
    "\u2066-\u2069]"  # bidi isolates (LRI, RLI, FSI, PDI)
)


def forbidden_character(value: str) -> str | None:
    """Why ``value`` may not be shown (a control or bidirectional character), or None."""
    match = FORBIDDEN_CHARACTERS.search(value)
    if match is None:
        return None
    char = match.group(0)
    kind = "a control character" if ord(char) < 0x100 else "a bidirectional control character"
    return f"holds {kind} (U+{ord(char):04X}); remove it"


def forbidden_line(text: str) -> tuple[int, str] | None:
    """The 1-based line of the first forbidden character in ``text`` and why, or None."""
    match = FORBIDDEN_CHARACTERS.search(text)
    if match is None:
        return None
    reason = forbidden_character(match.group(0))
    assert reason is not None
    return text.count("\n", 0, match.start()) + 1, reason


def too_long(value: str) -> str | None:
    if len(value) > MAX_FIELD_CHARS:
        return f"is {len(value)} characters long; the limit is {MAX_FIELD_CHARS}"
    return None


def read_bounded(path: Path, display_path: Path | str) -> tuple[str | None, list[Problem]]:
    """The UTF-8 text of a contributed file, read no further than :data:`MAX_FILE_BYTES`.

    A symbolic link, a larger file or bytes that are not UTF-8 give a problem (the last
    with its line), never an exception.
    """
    if path.is_symlink():
        return None, [Problem(display_path, None, "is a symbolic link; commit the file itself")]
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        return None, [Problem(display_path, None, f"cannot read file: {error.strerror or error}")]
    if len(data) > MAX_FILE_BYTES:
        return None, [
            Problem(display_path, None, f"file is larger than the limit of {MAX_FILE_BYTES} bytes")
        ]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return None, [Problem(display_path, line, f"not UTF-8 text: {error.reason}")]
