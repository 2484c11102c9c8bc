"""Distillation algorithms: attention, adversarial, multi-teacher, cross-modal, graph, adaptive and contrastive."""
