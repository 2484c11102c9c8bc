"""KD Atlas tooling: load, validate, format, export and render the knowledge base."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The single source is ``version`` in pyproject.toml; installing (also editable) records it.
    __version__ = version("kdatlas")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
