"""One problem found in the knowledge base, printed as ``path:line: severity: message``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Problem:
    """A finding tied to a file and (where known) a 1-based line."""

    path: Path | str
    line: int | None
    message: str
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else f"{self.path}"
        return _visible(f"{where}: {self.severity.value}: {self.message}")


def _visible(text: str) -> str:
    """``text`` with every unprintable character (controls, bidi overrides, line breaks)
    escaped, so a hostile value quoted in a message cannot act on the terminal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


class KnowledgeBaseError(Exception):
    """Raised when the knowledge base cannot be loaded; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
