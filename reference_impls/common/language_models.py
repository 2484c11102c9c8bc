r"""Text shipped with Python, character-level tiny causal language models, and their teacher.

**The data.** :func:`load_docstrings` collects the docstrings of a fixed list of standard
library modules (:data:`MODULES`: each module's, and those of the public classes and
functions each module defines itself, read by a fresh isolated interpreter running
:mod:`reference_impls.common.stdlib_docstrings`, so that a Jupyter kernel and a test
process read the same text), splits them into paragraphs at blank lines,
joins each paragraph's lines with single spaces and keeps the paragraphs of at least 24
printable ASCII characters (doctest lines ``>>>`` left out), each once. Python 3.11 gives
2,313 paragraphs of 61 modules (105,821 characters after truncation). The paragraphs are shuffled
with a generator seeded by ``seed`` and split 90/10 into training and test paragraphs; a
paragraph is encoded as ``<bos>`` followed by its characters, truncated to ``max_length``
tokens and right-padded with ``<pad>``:

$$
x = (\texttt{<bos>}, c_1, \dots, c_{L-1}, \texttt{<pad>}, \dots), \qquad
m_t = [\,t < L\,],
$$

with the boolean attention mask $m$ (True at a real position). The vocabulary is
``<pad>`` (0), ``<bos>`` (1) and the 95 printable ASCII characters (2 ... 96): $V = 97$.
Nothing is downloaded; the docstrings differ between Python versions, so the corpus's
hash (:attr:`TextCorpus.digest`) enters the teacher cache's key. Building it took 0.5 s, the fresh
interpreter included (measured on the shared 2-core machine, under load).

**The models.** :class:`TinyCausalLM` is a pre-norm decoder-only transformer: token and
learned position embeddings, ``layers`` blocks of causal multi-head self-attention and a
GELU MLP (width ``4 * dim``), a final layer norm and an LM head without bias (as LLM heads).
It returns a :class:`~reference_impls.common.models.ModelOutput` whose ``logits`` are
``[B, T, V]`` (position $t$ predicts token $t + 1$) and whose ``features`` are the hidden
states ``[B, T, D]`` after the embeddings and after each block (Hugging Face's
``output_hidden_states`` order). Padding is on the right, so causal attention never lets
a real position see a pad: no key mask is needed. With ``causal=False`` the same network
is a bidirectional masked-LM encoder; its vocabulary then adds ``<mask>`` (:data:`MASK`,
97), and :func:`mask_tokens` corrupts inputs as BERT does. :func:`teacher_lm` (dim 64,
2 layers, 4 heads, 116k parameters) and :func:`student_lm` (dim 32, 1 layer, 2 heads, 21k)
are the causal pair used by the tests and the notebook; :func:`teacher_encoder` and
:func:`student_encoder` (dim 64, 2 and 1 layers) the masked-LM pair.

**Training and the teacher cache.** :func:`next_token_loss` is the masked cross-entropy
of next-token prediction (per kept token); :func:`fit_language_model` trains with AdamW
on random batches of training paragraphs; :func:`language_model_teacher` trains the
teacher once (400 steps of 32 paragraphs, lr 3e-3: 64 s of wall time on the shared
2-core machine at load 2-4, 114-139 s at load 12) and caches it with
:func:`reference_impls.common.experiment.cached_model`; :func:`masked_lm_teacher` does the
same for the masked-LM teacher (133 s at load 12).
:func:`generate` samples (or decodes greedily) continuations with a seeded generator.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common import stdlib_docstrings
from reference_impls.common.models import ModelOutput
from reference_impls.common.stdlib_docstrings import MODULES
from reference_impls.common.validation import at_least, positive

PAD, BOS = 0, 1
ALPHABET = "".join(chr(code) for code in range(32, 127))
VOCAB_SIZE = 2 + len(ALPHABET)
MAX_LENGTH = 48


def encode(text: str) -> list[int]:
    """Token ids of ``text`` (printable ASCII; other characters are an error)."""
    unknown = sorted({c for c in text if c not in ALPHABET})
    if unknown:
        raise ValueError(f"text holds characters outside printable ASCII: {unknown[:10]}")
    return [2 + ord(c) - 32 for c in text]


def decode(tokens: torch.Tensor | list[int]) -> str:
    """The characters of ``tokens``; ``<bos>`` and ``<pad>`` are left out."""
    ids = tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens
    return "".join(chr(i - 2 + 32) for i in ids if i >= 2)


def _paragraphs() -> list[str]:
    paragraphs = []
    for doc in _docstrings():
        for paragraph in re.split(r"\n\s*\n", doc):
            paragraph = " ".join(paragraph.split())
            printable = all(c in ALPHABET for c in paragraph)
            if len(paragraph) >= 24 and printable and not paragraph.startswith(">>>"):
                paragraphs.append(paragraph)
    return list(dict.fromkeys(paragraphs))


@functools.cache
def _docstrings() -> tuple[str, ...]:
    """The docstrings of :data:`MODULES`, read by a fresh isolated interpreter
    (:mod:`reference_impls.common.stdlib_docstrings`): the same in every process."""
    script = Path(stdlib_docstrings.__file__)
    output = subprocess.run(
        [sys.executable, "-I", str(script)], capture_output=True, text=True, check=True
    ).stdout
    return tuple(json.loads(output))


@dataclass(frozen=True)
class TextCorpus:
    """Encoded paragraphs: tokens ``[N, T]`` (``<bos>`` first, right-padded), masks ``[N, T]``."""

    train_tokens: torch.Tensor
    train_mask: torch.Tensor
    test_tokens: torch.Tensor
    test_mask: torch.Tensor
    digest: str

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def train_subset(self, count: int) -> TextCorpus:
        """The first ``count`` training paragraphs (already shuffled), the same test set."""
        return TextCorpus(
            self.train_tokens[:count],
            self.train_mask[:count],
            self.test_tokens,
            self.test_mask,
            f"{self.digest}:{count}",
        )


def encode_batch(
    texts: list[str], max_length: int = MAX_LENGTH
) -> tuple[torch.Tensor, torch.Tensor]:
    """``<bos>`` + characters, truncated to ``max_length``, right-padded; and the mask."""
    tokens = torch.full((len(texts), max_length), PAD, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [BOS, *encode(text)][:max_length]
        tokens[row, : len(ids)] = torch.tensor(ids)
    return tokens, tokens != PAD


def load_docstrings(seed: int = 0, max_length: int = MAX_LENGTH) -> TextCorpus:
    """The standard library's docstring paragraphs, shuffled by ``seed``, split 90/10."""
    at_least("max_length", max_length, 2)
    paragraphs = _paragraphs()
    order = torch.randperm(len(paragraphs), generator=torch.Generator().manual_seed(seed))
    shuffled = [paragraphs[i] for i in order.tolist()]
    cut = int(0.9 * len(shuffled))
    train_tokens, train_mask = encode_batch(shuffled[:cut], max_length)
    test_tokens, test_mask = encode_batch(shuffled[cut:], max_length)
    digest = hashlib.sha256("\n".join(shuffled).encode()).hexdigest()[:16]
    return TextCorpus(train_tokens, train_mask, test_tokens, test_mask, f"{digest}:{max_length}")


# ----------------------------------------------------------------------------- models


class Block(nn.Module):
    """Pre-norm transformer block: (causal) self-attention, then a GELU MLP, each residual."""

    def __init__(self, dim: int, heads: int, causal: bool) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads, self.causal = heads, causal
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention output ``[B, T, D]`` and the attention probabilities ``[B, h, T, T]``."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(dim // self.heads)
        if self.causal:
            future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        probabilities = scores.softmax(dim=-1)
        mixed = (probabilities @ v).transpose(1, 2).reshape(batch, length, dim)
        return self.proj(mixed), probabilities

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attended, probabilities = self.attention(self.norm1(x))
        x = x + attended
        return x + self.mlp(self.norm2(x)), probabilities


class TinyCausalLM(nn.Module):
    """A small decoder-only transformer over characters; ``causal=False``: a masked-LM encoder.

    ``forward(tokens)`` returns ``ModelOutput(logits=[B, T, V], features=[hidden states])``,
    the hidden states after the embeddings and after each block, ``[B, T, dim]`` each;
    the attention probabilities of the last call are kept in ``last_attentions``.
    """

    def __init__(
        self,
        vocab_size: int = VOCAB_SIZE,
        dim: int = 64,
        layers: int = 2,
        heads: int = 4,
        max_length: int = MAX_LENGTH,
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.vocab_size, self.dim, self.max_length = vocab_size, dim, max_length
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Embedding(max_length, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, causal) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.last_attentions: list[torch.Tensor] = []

    def forward(self, tokens: torch.Tensor) -> ModelOutput:
        if tokens.dim() != 2 or tokens.shape[1] > self.max_length:
            raise ValueError(
                f"tokens must have shape [B, T] with T <= {self.max_length}, got {tuple(tokens.shape)}"
            )
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        hidden, attentions = [x], []
        for block in self.blocks:
            x, probabilities = block(x)
            hidden.append(x)
            attentions.append(probabilities)
        self.last_attentions = attentions
        return ModelOutput(logits=self.head(self.norm(x)), features=hidden)


def teacher_lm(vocab_size: int = VOCAB_SIZE) -> TinyCausalLM:
    """The teacher: dim 64, 2 layers, 4 heads (116k parameters)."""
    return TinyCausalLM(vocab_size, dim=64, layers=2, heads=4)


def student_lm(vocab_size: int = VOCAB_SIZE) -> TinyCausalLM:
    """The student: dim 32, 1 layer, 2 heads (21k parameters)."""
    return TinyCausalLM(vocab_size, dim=32, layers=1, heads=2)


def logits_of(output: Any) -> torch.Tensor:
    """The ``[B, T, V]`` logits of a model's output (ours, or a Hugging Face output)."""
    return output.logits if hasattr(output, "logits") else output


# ----------------------------------------------------------------------------- training


def shifted(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at positions ``0..T-2`` and their next-token labels (``-100`` where padded)."""
    labels = tokens[:, 1:].masked_fill(~mask[:, 1:].bool(), -100)
    return logits[:, :-1], labels


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of next-token prediction, averaged over the kept tokens."""
    predicted, labels = shifted(logits, tokens, mask)
    return F.cross_entropy(
        predicted.reshape(-1, predicted.shape[-1]).float(), labels.reshape(-1), ignore_index=-100
    )


def fit_language_model(
    model: nn.Module,
    corpus: TextCorpus,
    loss_of_batch: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    parameters: Any = None,
) -> list[float]:
    """AdamW on random training batches; returns the loss of every step.

    ``loss_of_batch(tokens, mask, rows)`` (``rows``: the batch's indices in the training
    split) defaults to the next-token loss of ``model``; a distillation passes its own
    (and its ``parameters``).
    """
    at_least("steps", steps, 1)
    positive("lr", lr)
    if loss_of_batch is None:

        def loss_of_batch(
            tokens: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor
        ) -> torch.Tensor:
            return next_token_loss(model(tokens).logits, tokens, mask)

    trainable = [p for p in (parameters or model.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    count = corpus.train_tokens.shape[0]
    model.train()
    losses = []
    for _ in range(steps):
        rows = torch.randint(0, count, (min(batch_size, count),), generator=generator)
        tokens, mask = corpus.train_tokens[rows].to(device), corpus.train_mask[rows].to(device)
        loss = loss_of_batch(tokens, mask, rows)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


class LMDistiller(nn.Module):
    """A student trained with a token-level loss against a frozen teacher, on given sequences.

    ``forward(tokens, mask)`` returns ``{"loss": ce_weight * CE + kd_weight * KD, "ce", "kd"}``:
    the next-token cross-entropy on the data and the distillation loss on the shifted
    logits ``[B, T-1, V]`` with their labels (``-100`` where padded). ``teacher_logits``
    may be passed (computed once, as the notebook does for a fixed training set).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        loss: nn.Module,
        ce_weight: float = 0.0,
        kd_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.student, self.teacher, self.loss = student, teacher.eval(), loss
        self.teacher.requires_grad_(False)
        self.ce_weight, self.kd_weight = ce_weight, kd_weight

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, teacher_logits: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        student_logits = self.student(tokens).logits
        if teacher_logits is None:
            with torch.no_grad():
                teacher_logits = self.teacher(tokens).logits
        predicted, labels = shifted(student_logits, tokens, mask)
        kd = self.loss(predicted, teacher_logits[:, :-1], labels)
        ce = next_token_loss(student_logits, tokens, mask) if self.ce_weight else kd.new_zeros(())
        total = self.ce_weight * ce + self.kd_weight * kd
        return {"loss": total, "ce": ce.detach(), "kd": kd.detach()}


@torch.no_grad()
def perplexity(model: nn.Module, tokens: torch.Tensor, mask: torch.Tensor) -> float:
    """$\\exp$ of the next-token cross-entropy over the kept tokens."""
    model.eval()
    return math.exp(float(next_token_loss(model(tokens).logits, tokens, mask)))


@torch.no_grad()
def token_kl(
    student: nn.Module, teacher: nn.Module, tokens: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per-position $\\mathrm{KL}(p_\\text{teacher} \\| q_\\text{student})$ ``[B, T-1]``, 0 where padded."""
    log_q = F.log_softmax(student(tokens).logits[:, :-1].float(), dim=-1)
    log_p = F.log_softmax(teacher(tokens).logits[:, :-1].float(), dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return kl * mask[:, 1:]


@torch.no_grad()
def generate(
    model: nn.Module,
    prompts: torch.Tensor,
    new_tokens: int,
    *,
    temperature: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``prompts`` ``[B, P]`` (no padding) followed by ``new_tokens`` sampled tokens.

    Sampling draws from ``softmax(logits / temperature)`` over the characters (never
    ``<pad>`` or ``<bos>``) with ``generator`` (on the CPU); ``greedy`` takes the argmax.
    """
    at_least("new_tokens", new_tokens, 0)
    positive("temperature", temperature)
    was_training = model.training
    model.eval()
    tokens = prompts
    limit = getattr(model, "max_length", MAX_LENGTH)
    for _ in range(new_tokens):
        logits = model(tokens[:, -limit:]).logits[:, -1].float()
        logits[:, :2] = float("-inf")  # characters only
        if greedy:
            chosen = logits.argmax(dim=-1, keepdim=True)
        else:
            probabilities = (logits / temperature).softmax(dim=-1).cpu()
            chosen = torch.multinomial(probabilities, 1, generator=generator).to(tokens.device)
        tokens = torch.cat([tokens, chosen], dim=1)
    model.train(was_training)
    return tokens


TEACHER_SETTINGS: dict[str, Any] = {"steps": 400, "batch_size": 32, "lr": 3e-3, "data_seed": 0}


def language_model_teacher(
    corpus: TextCorpus | None = None,
    device: torch.device | str | None = "cpu",
    *,
    steps: int | None = None,
    cache_dir: str | None = None,
) -> tuple[TinyCausalLM, dict[str, Any], bool]:
    """:func:`teacher_lm` trained on the docstrings, cached: ``(teacher, record, from_cache)``.

    The record holds the training losses (every 20th step) and the test perplexity;
    ``steps`` overrides :data:`TEACHER_SETTINGS`' (a short run for tests), ``cache_dir``
    the cache folder.
    """
    from reference_impls.common.experiment import cached_model

    settings = dict(TEACHER_SETTINGS)
    if steps is not None:
        settings["steps"] = at_least("steps", steps, 1)
    corpus = corpus if corpus is not None else load_docstrings(settings["data_seed"])

    def fit(model: nn.Module) -> dict[str, Any]:
        losses = fit_language_model(
            model,
            corpus,
            steps=settings["steps"],
            batch_size=settings["batch_size"],
            lr=settings["lr"],
        )
        cpu = next(model.parameters()).device
        test = perplexity(model, corpus.test_tokens.to(cpu), corpus.test_mask.to(cpu))
        return {"losses": losses[::20], "test_perplexity": test}

    model, record, from_cache = cached_model(
        teacher_lm,
        fit,
        settings={**settings, "corpus": corpus.digest},
        code_files=[__file__],
        device=device,
        cache_dir=cache_dir,
    )
    return model, record, from_cache


# ----------------------------------------------------------------------------- masked LM

MASK = VOCAB_SIZE  # the <mask> token of the masked-LM encoders (vocabulary VOCAB_SIZE + 1)


def mask_tokens(
    tokens: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator,
    *,
    proportion: float = 0.15,
    word_mask: float = 0.8,
    word_keep: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: ``proportion`` of the real characters are chosen (``<bos>`` never);
    of those ``word_mask`` become ``<mask>``, ``word_keep`` stay, the rest become a random
    character. Returns the corrupted tokens and labels (the original token where chosen,
    -100 elsewhere). Draws on the CPU from ``generator``."""
    device = tokens.device
    tokens, mask = tokens.cpu(), mask.cpu().bool()
    candidates = mask & (tokens >= 2)
    chosen = (torch.rand(tokens.shape, generator=generator) < proportion) & candidates
    labels = tokens.masked_fill(~chosen, -100)
    action = torch.rand(tokens.shape, generator=generator)
    random_characters = torch.randint(2, VOCAB_SIZE, tokens.shape, generator=generator)
    corrupted = torch.where(chosen & (action < word_mask), MASK, tokens)
    replaced = chosen & (action >= word_mask + word_keep)
    corrupted = torch.where(replaced, random_characters, corrupted)
    return corrupted.to(device), labels.to(device)


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at the chosen positions (labels -100 elsewhere)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))


def teacher_encoder() -> TinyCausalLM:
    """The masked-LM teacher: bidirectional, dim 64, 2 layers, 4 heads, with ``<mask>``."""
    return TinyCausalLM(VOCAB_SIZE + 1, dim=64, layers=2, heads=4, causal=False)


def student_encoder() -> TinyCausalLM:
    """The masked-LM student: the teacher's width (DistilBERT keeps it), 1 layer."""
    return TinyCausalLM(VOCAB_SIZE + 1, dim=64, layers=1, heads=4, causal=False)


def fit_masked_lm(
    model: nn.Module,
    corpus: TextCorpus,
    loss_of_batch: Callable[..., torch.Tensor] | None = None,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """:func:`fit_language_model` on BERT-corrupted batches: ``loss_of_batch(corrupted,
    mask, labels)`` defaults to the model's masked-LM loss."""
    generator = torch.Generator().manual_seed(seed + 1)

    def batch_loss(tokens: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        corrupted, labels = mask_tokens(tokens, mask, generator)
        if loss_of_batch is not None:
            return loss_of_batch(corrupted, mask, labels)
        return masked_lm_loss(model(corrupted).logits, labels)

    return fit_language_model(
        model, corpus, batch_loss, steps=steps, batch_size=batch_size, lr=lr, seed=seed
    )


@torch.no_grad()
def masked_accuracy(model: nn.Module, corpus: TextCorpus, seed: int = 0) -> float:
    """Top-1 accuracy at the chosen positions of the corrupted test paragraphs."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    corrupted, labels = mask_tokens(corpus.test_tokens, corpus.test_mask, generator)
    predicted = model(corrupted).logits.argmax(-1)
    chosen = labels != -100
    return float((predicted[chosen] == labels[chosen]).float().mean())


def masked_lm_teacher(
    corpus: TextCorpus | None = None, *, steps: int | None = None, cache_dir: str | None = None
) -> tuple[TinyCausalLM, dict[str, Any], bool]:
    """:func:`teacher_encoder` trained on the docstrings by masked LM, cached (CPU)."""
    from reference_impls.common.experiment import cached_model

    settings = dict(TEACHER_SETTINGS)
    if steps is not None:
        settings["steps"] = at_least("steps", steps, 1)
    corpus = corpus if corpus is not None else load_docstrings(settings["data_seed"])

    def fit(model: nn.Module) -> dict[str, Any]:
        losses = fit_masked_lm(
            model, corpus, steps=settings["steps"], batch_size=settings["batch_size"]
        )
        return {"losses": losses[::20], "test_accuracy": masked_accuracy(model, corpus)}

    return cached_model(
        teacher_encoder,
        fit,
        settings={**settings, "corpus": corpus.digest, "objective": "masked LM"},
        code_files=[__file__],
        device="cpu",
        cache_dir=cache_dir,
    )


__all__ = [
    "ALPHABET",
    "BOS",
    "MASK",
    "MAX_LENGTH",
    "MODULES",
    "PAD",
    "VOCAB_SIZE",
    "LMDistiller",
    "TextCorpus",
    "TinyCausalLM",
    "decode",
    "encode",
    "encode_batch",
    "fit_language_model",
    "fit_masked_lm",
    "generate",
    "language_model_teacher",
    "load_docstrings",
    "logits_of",
    "mask_tokens",
    "masked_accuracy",
    "masked_lm_loss",
    "masked_lm_teacher",
    "next_token_loss",
    "perplexity",
    "shifted",
    "student_encoder",
    "student_lm",
    "teacher_encoder",
    "teacher_lm",
    "token_kl",
]
