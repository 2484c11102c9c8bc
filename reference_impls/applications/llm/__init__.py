"""Large language models: token-level losses (forward and reverse KL, generalized JSD, skew KLs) and procedures."""

from reference_impls.applications.llm.distilbert import DistilBERTLoss
from reference_impls.applications.llm.distilling_step_by_step import DistillingStepByStep
from reference_impls.applications.llm.gkd import GKDLoss
from reference_impls.applications.llm.minillm import MiniLLMReverseKLLoss
from reference_impls.applications.llm.on_policy import GKD
from reference_impls.applications.llm.sequence_kd import SequenceLevelKD
from reference_impls.applications.llm.skew_kl import SkewKLLoss
from reference_impls.applications.llm.skew_reverse_kl import SkewReverseKLLoss
from reference_impls.applications.llm.token_losses import TokenKDLoss
from reference_impls.applications.llm.word_level import WordLevelKDLoss

__all__ = [
    "GKD",
    "DistilBERTLoss",
    "DistillingStepByStep",
    "GKDLoss",
    "MiniLLMReverseKLLoss",
    "SequenceLevelKD",
    "SkewKLLoss",
    "SkewReverseKLLoss",
    "TokenKDLoss",
    "WordLevelKDLoss",
]
