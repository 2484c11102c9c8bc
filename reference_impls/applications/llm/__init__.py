"""Large language models: token-level losses (forward and reverse KL, generalized JSD, skew KLs), BERT compression (DistilBERT, TinyBERT, MiniLM, Patient KD) and procedures."""

from reference_impls.applications.llm.distilbert import DistilBERTLoss
from reference_impls.applications.llm.distilling_step_by_step import DistillingStepByStep
from reference_impls.applications.llm.gkd import GKDLoss
from reference_impls.applications.llm.minillm import MiniLLMReverseKLLoss
from reference_impls.applications.llm.minillm_policy import MiniLLM
from reference_impls.applications.llm.minilm import MiniLMLoss
from reference_impls.applications.llm.on_policy import GKD
from reference_impls.applications.llm.patient_kd import PatientKDLoss
from reference_impls.applications.llm.sequence_kd import SequenceLevelKD
from reference_impls.applications.llm.skew_kl import SkewKLLoss
from reference_impls.applications.llm.skew_reverse_kl import SkewReverseKLLoss
from reference_impls.applications.llm.tinybert import TinyBERTLoss, TinyBERTPredictionLoss
from reference_impls.applications.llm.token_losses import TokenKDLoss
from reference_impls.applications.llm.word_level import WordLevelKDLoss

__all__ = [
    "GKD",
    "DistilBERTLoss",
    "DistillingStepByStep",
    "GKDLoss",
    "MiniLLM",
    "MiniLLMReverseKLLoss",
    "MiniLMLoss",
    "PatientKDLoss",
    "SequenceLevelKD",
    "SkewKLLoss",
    "SkewReverseKLLoss",
    "TinyBERTLoss",
    "TinyBERTPredictionLoss",
    "TokenKDLoss",
    "WordLevelKDLoss",
]
