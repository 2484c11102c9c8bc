"""The docstrings of standard-library modules, read in a fresh interpreter.

Run as a script (``python -I stdlib_docstrings.py``), it prints as JSON the docstring of
each module of :data:`MODULES` and of the public classes and routines each defines itself,
in a fixed order. :mod:`reference_impls.common.language_models` builds its corpus from this
output: a fresh, isolated interpreter sees the same text whatever the calling process
imported or replaced (a Jupyter kernel imports ``logging.handlers`` and replaces
``builtins.input``, IPython adds ``display`` to ``builtins``, pytest replaces
``threading.excepthook``). Standard library only.
"""

from __future__ import annotations

import importlib
import inspect
import json
import warnings
from typing import Any

MODULES: tuple[str, ...] = (
    "builtins", "string", "textwrap", "json", "collections", "functools", "itertools",
    "heapq", "bisect", "random", "statistics", "fractions", "pathlib", "os.path", "re",
    "math", "datetime", "calendar", "difflib", "shlex", "argparse", "logging", "typing",
    "dataclasses", "enum", "abc", "contextlib", "copy", "pprint", "csv", "zipfile",
    "tarfile", "urllib.parse", "html", "socket", "threading", "queue", "subprocess",
    "tempfile", "shutil", "glob", "fnmatch", "inspect", "ast", "io", "pickle", "struct",
    "decimal", "operator", "weakref", "codecs", "base64", "hashlib", "secrets", "uuid",
    "time", "configparser", "timeit", "tokenize", "keyword", "warnings",
)  # fmt: skip


def _defined_in(obj: Any, module: Any) -> bool:
    """Whether ``obj`` is the module's own: defined in it or in its C accelerator (``_json``)."""
    owner = getattr(obj, "__module__", None) or ""
    return owner in (module.__name__, "_" + module.__name__.rsplit(".", 1)[-1])


def documented(module: Any) -> list[Any]:
    """The module and the public classes and routines it defines itself (no submodules)."""
    public = [getattr(module, a) for a in sorted(dir(module)) if a[0] != "_"]
    return [module] + [
        obj
        for obj in public
        if (inspect.isclass(obj) or inspect.isroutine(obj)) and _defined_in(obj, module)
    ]


def docstrings() -> list[str]:
    """Every docstring of :data:`MODULES`, in order, each once."""
    docs: list[str] = []
    with warnings.catch_warnings():  # typing.io, typing.re: deprecated aliases
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in MODULES:
            for obj in documented(importlib.import_module(name)):
                doc = inspect.getdoc(obj)
                if doc:
                    docs.append(doc)
    return list(dict.fromkeys(docs))


if __name__ == "__main__":
    print(json.dumps(docstrings()))
