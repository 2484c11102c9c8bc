"""``python -m kdatlas``: the same as the ``kdatlas`` command."""

from kdatlas.cli import app

app(prog_name="kdatlas")
