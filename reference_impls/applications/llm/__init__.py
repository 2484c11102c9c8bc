"""Token-level distillation losses for language models (shared module, not yet in the taxonomy)."""

from reference_impls.applications.llm.token_losses import (
    DIVERGENCES,
    chunked_token_kd_loss,
    fused_linear_token_kd_loss,
    naive_token_kd_loss,
)

__all__ = [
    "DIVERGENCES",
    "chunked_token_kd_loss",
    "fused_linear_token_kd_loss",
    "naive_token_kd_loss",
]
