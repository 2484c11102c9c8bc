"""Distillation by modality: 3D input, multi-view, text, speech and video."""
