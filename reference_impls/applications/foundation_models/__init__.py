"""Reference implementations filed under this taxonomy node."""

from reference_impls.applications.foundation_models.clip_kd import CLIPKDLoss
from reference_impls.applications.foundation_models.embedding_cosine import EmbeddingCosineLoss
from reference_impls.applications.foundation_models.embedding_mse import EmbeddingMSELoss
from reference_impls.applications.foundation_models.mobilesam import DecoupledEncoderLoss
from reference_impls.applications.foundation_models.similarity_matrix import SimilarityMatrixLoss
from reference_impls.applications.foundation_models.tinyclip import AffinityMimickingLoss

__all__ = [
    "AffinityMimickingLoss",
    "CLIPKDLoss",
    "DecoupledEncoderLoss",
    "EmbeddingCosineLoss",
    "EmbeddingMSELoss",
    "SimilarityMatrixLoss",
]
