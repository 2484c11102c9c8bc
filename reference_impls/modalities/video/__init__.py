"""Reference implementations filed under this taxonomy node."""

from reference_impls.modalities.video.fewer_frames import FewerFramesDistillation
from reference_impls.modalities.video.temporal_relation import TemporalRelationDistillation
from reference_impls.modalities.video.video_to_image import VideoToImageDistillation

__all__ = [
    "FewerFramesDistillation",
    "TemporalRelationDistillation",
    "VideoToImageDistillation",
]
