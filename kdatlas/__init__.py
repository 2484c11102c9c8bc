"""KD Atlas tooling: load, validate, format, export and render the knowledge base."""

__version__ = "0.1.0"
