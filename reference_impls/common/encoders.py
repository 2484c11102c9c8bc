r"""Tiny BERT encoders (Hugging Face ``transformers``, built from a config) and what they compute inside.

Why a module of its own: the BERT-compression losses (TinyBERT, MiniLM, Patient KD) read
a BERT's hidden states, its unnormalised attention scores and its values; this module
builds tiny :class:`transformers.BertForSequenceClassification` models from a
``BertConfig`` (never downloaded) and reads those tensors with forward hooks, as
torchdistill does. ``transformers`` is an optional extra (``llm``), imported only here.

**The data.** :func:`load_bert_sentiment` is the generated sentiment task of
:func:`reference_impls.common.text.load_sentiment` (one or two clauses of a small
grammar, a label decided by composing valences, negations, intensifiers and ``but``)
with a ``[CLS]`` token (:data:`CLS`, the last id of the vocabulary) put before every
sentence, as BERT's classifiers read it; the attention mask is ``ids != 0`` (``<pad>``).
Building it took 0.9 s (2,000 training and 500 test sentences, measured on the shared
2-core machine, under load).

**The models.** :func:`tiny_bert` builds a post-norm BERT (GELU, learned positions,
[CLS] pooler with tanh, linear classifier) with dropout 0 (the runs are short and
deterministic); :func:`teacher_bert` has 4 layers of width 64 with 4 heads (feed-forward
128, 143k parameters), :func:`student_bert` 2 layers of the same width and heads (the
Patient KD and DistilBERT set-up: half the layers; 76k parameters); ``student_bert(dim=32)``
is a narrow one (TinyBERT's projection then maps 32 to 64). :func:`bert_outputs` runs a
model and returns :class:`BertOutputs`: the logits, the hidden states after the
embeddings and after each layer (Hugging Face's ``output_hidden_states`` order), and, per
layer, the unnormalised attention scores $QK^\top/\sqrt{d_k}$ ``[B, h, T, T]`` (no mask
added: the losses take the mask) and the values $V$ ``[B, h, T, d_k]``, read from the
outputs of each layer's ``query``, ``key`` and ``value`` projections.
:func:`attention_probabilities` is the softmax of scores over the real keys.

**Training and the teacher cache.** :func:`fit_bert` trains a model on the task (Adam,
cosine schedule: :func:`reference_impls.common.text.fit`) with a loss of the batch;
:func:`sentiment_bert_teacher` trains the teacher once (20 epochs, lr 2e-3: about 24 s of
CPU time, 60-90 s of wall time on the shared 2-core machine at load 7-8) and caches it with
:func:`reference_impls.common.experiment.cached_model`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common import text
from reference_impls.common.text import PAD, SentimentData, load_sentiment
from reference_impls.common.validation import at_least

MAX_LENGTH = 32


def _vocabulary() -> tuple[str, ...]:
    return (*load_sentiment(0, num_train=1, num_test=1).vocab, "[CLS]")


VOCAB = _vocabulary()
VOCAB_SIZE = len(VOCAB)
CLS = VOCAB_SIZE - 1  # the [CLS] token, put before every sentence


def load_bert_sentiment(seed: int = 0, num_train: int = 2000, num_test: int = 500) -> SentimentData:
    """:func:`~reference_impls.common.text.load_sentiment` with ``[CLS]`` before each sentence."""
    data = load_sentiment(seed, num_train, num_test)

    def prefixed(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.full((x.shape[0], 1), CLS, dtype=x.dtype), x], dim=1)

    return SentimentData(
        prefixed(data.x_train),
        data.y_train,
        prefixed(data.x_test),
        data.y_test,
        VOCAB,
        torch.cat([data.word_classes, torch.tensor([-1])]),
        data.class_names,
    )


def attention_mask_of(ids: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` booleans, True at a real token (not ``<pad>``)."""
    return ids != PAD


# ----------------------------------------------------------------------------- models


def tiny_bert(
    layers: int, dim: int = 64, heads: int = 4, num_classes: int = 2, vocab_size: int = VOCAB_SIZE
) -> nn.Module:
    """A ``BertForSequenceClassification`` from a ``BertConfig`` (feed-forward ``2 * dim``)."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=dim,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * dim,
        max_position_embeddings=MAX_LENGTH,
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=num_classes,
        pad_token_id=PAD,
    )
    return BertForSequenceClassification(config)


def teacher_bert() -> nn.Module:
    """The teacher: 4 layers, width 64, 4 heads."""
    return tiny_bert(4, 64, 4)


def student_bert(dim: int = 64, layers: int = 2) -> nn.Module:
    """The student: 2 layers, 4 heads, width 64 (``dim=32``: a narrow one)."""
    return tiny_bert(layers, dim, 4)


@dataclass(frozen=True)
class BertOutputs:
    """What a BERT computes: ``logits`` ``[B, C]``; ``hidden``: ``L + 1`` tensors ``[B, T, D]``
    (embeddings first); ``scores``: ``L`` tensors ``[B, h, T, T]`` ($QK^\\top/\\sqrt{d_k}$,
    no mask added); ``values``: ``L`` tensors ``[B, h, T, d_k]``."""

    logits: torch.Tensor
    hidden: tuple[torch.Tensor, ...]
    scores: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, dim = x.shape
    return x.view(batch, length, heads, dim // heads).transpose(1, 2)


def bert_outputs(
    model: nn.Module, ids: torch.Tensor, mask: torch.Tensor | None = None
) -> BertOutputs:
    """Run ``model`` on ``ids`` (mask: ``ids != <pad>`` by default) and read its internals."""
    mask = attention_mask_of(ids) if mask is None else mask
    heads = model.config.num_attention_heads
    captured: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    for index, layer in enumerate(model.bert.encoder.layer):
        for name in ("query", "key", "value"):

            def keep(
                _module: nn.Module, _inputs: Any, output: torch.Tensor, key=(index, name)
            ) -> None:
                captured[key] = output

            handles.append(getattr(layer.attention.self, name).register_forward_hook(keep))
    try:
        output = model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    scores, values = [], []
    for index in range(len(model.bert.encoder.layer)):
        q, k, v = (_heads(captured[index, name], heads) for name in ("query", "key", "value"))
        scores.append(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]))
        values.append(v)
    return BertOutputs(output.logits, tuple(output.hidden_states), tuple(scores), tuple(values))


def attention_probabilities(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of ``scores`` ``[B, h, T, T]`` over the real keys of ``mask`` ``[B, T]``."""
    keys = mask.bool()[:, None, None, :]
    return scores.masked_fill(~keys, float("-inf")).softmax(dim=-1)


# ----------------------------------------------------------------------------- training


class _BatchLoss(nn.Module):
    """Adapts ``loss_of_batch(ids, mask, labels)`` to :func:`reference_impls.common.text.fit`."""

    def __init__(
        self, model: nn.Module, loss_of_batch: Callable[..., torch.Tensor], extra: nn.Module | None
    ) -> None:
        super().__init__()
        self.model, self.extra, self.loss_of_batch = model, extra, loss_of_batch

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": self.loss_of_batch(ids, attention_mask_of(ids), labels)}


def classification_loss(model: nn.Module) -> Callable[..., torch.Tensor]:
    """The cross-entropy of ``model`` on a batch (the teacher's and the baselines' loss)."""

    def loss(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            model(input_ids=ids, attention_mask=mask.long()).logits.float(), labels
        )

    return loss


def fit_bert(
    model: nn.Module,
    data: SentimentData,
    loss_of_batch: Callable[..., torch.Tensor] | None = None,
    *,
    epochs: int = 10,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 0,
    extra: nn.Module | None = None,
) -> list[float]:
    """Train ``model`` (and the parameters of ``extra``: a projection) on ``data``'s training
    split with ``loss_of_batch(ids, mask, labels)`` (default: cross-entropy); mean loss per epoch."""
    at_least("epochs", epochs, 1)
    loss_of_batch = loss_of_batch if loss_of_batch is not None else classification_loss(model)
    module = _BatchLoss(model, loss_of_batch, extra)
    return text.fit(
        module, data.x_train, data.y_train, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed
    )


@torch.no_grad()
def bert_accuracy(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of ``model`` on ``ids`` (mask from padding)."""
    model.eval()
    logits = model(input_ids=ids, attention_mask=attention_mask_of(ids).long()).logits
    return float((logits.argmax(-1) == labels).float().mean())


TEACHER_SETTINGS: dict[str, Any] = {"epochs": 20, "lr": 2e-3, "batch_size": 64, "data_seed": 0}


def sentiment_bert_teacher(
    data: SentimentData | None = None, *, epochs: int | None = None, cache_dir: str | None = None
) -> tuple[nn.Module, dict[str, Any], bool]:
    """:func:`teacher_bert` trained on :func:`load_bert_sentiment`, cached (CPU):
    ``(teacher, record, from_cache)``; the record holds the loss per epoch and the test accuracy."""
    from reference_impls.common.experiment import cached_model

    settings = dict(TEACHER_SETTINGS)
    if epochs is not None:
        settings["epochs"] = at_least("epochs", epochs, 1)
    data = data if data is not None else load_bert_sentiment(settings["data_seed"])

    def fit(model: nn.Module) -> dict[str, Any]:
        losses = fit_bert(
            model,
            data,
            epochs=settings["epochs"],
            lr=settings["lr"],
            batch_size=settings["batch_size"],
        )
        return {"losses": losses, "test_accuracy": bert_accuracy(model, data.x_test, data.y_test)}

    fingerprint = f"{data.x_train.sum().item()}:{data.x_train.shape}:{data.y_train.sum().item()}"
    return cached_model(
        teacher_bert,
        fit,
        settings={**settings, "data": fingerprint},
        code_files=[__file__, text.__file__],
        device="cpu",
        cache_dir=cache_dir,
    )


__all__ = [
    "CLS",
    "MAX_LENGTH",
    "VOCAB",
    "VOCAB_SIZE",
    "BertOutputs",
    "attention_mask_of",
    "attention_probabilities",
    "bert_accuracy",
    "bert_outputs",
    "classification_loss",
    "fit_bert",
    "load_bert_sentiment",
    "sentiment_bert_teacher",
    "student_bert",
    "teacher_bert",
    "tiny_bert",
]
