"""Reference implementations filed under this taxonomy node."""

from reference_impls.algorithms.graph.glnn import GLNNLoss
from reference_impls.algorithms.graph.lsp import LSPLoss

__all__ = [
    "GLNNLoss",
    "LSPLoss",
]
