r"""Generated arithmetic word problems with written steps, and their chain-of-thought teacher.

Nothing is downloaded: the problems are drawn from a seed (2,500 of them in 0.5 s on the
shared 2-core machine, load average about 7).

**The task** (:func:`load_word_problems`). A problem is a short story about a count,

    ``ann has 3 coins , buys 3 , gives 2 . how many ?``

a start value $v_0 \in \{1, \dots, 9\}$ followed by 2 steps (2 to ``max_steps``), each a
verb and an amount $a_k \in \{1, \dots, \texttt{max\_amount}\}$ (3 by default). Three
verbs add (``buys``, ``finds``, ``gets``) and three subtract (``gives``, ``loses``,
``eats``); a verb is drawn among those that keep the count in $[0, 20]$. Its worked
steps (the *rationale*) write each operation out and its *label* is the final count:

$$
r = \big(v_0 \pm a_1 = v_1\ ,\ v_1 \pm a_2 = v_2\ ,\ \dots\big), \qquad
y = v_K = v_0 + \textstyle\sum_k s_k a_k, \quad s_k = \pm 1 .
$$

A model that answers in one step must learn which verbs add and compose the steps; the
rationale spells both out, which is what distilling step-by-step (``hsieh2023distilling``)
exploits. Source ids (:data:`SOURCE_VOCAB`): 0 is padding, 1 and 2 the task prefixes
``[label]`` and ``[rationale]``. Target ids (:data:`TARGET_VOCAB`): 0 padding, 1 ``<s>``,
2 ``</s>``, the numbers 0 ... 20, ``+ - = ,`` and ``so``. A target row is ``<s> ... </s>``
then padding: the label's ``<s> 4 </s>``, the rationale's ``<s> 3 + 3 = 6 , 6 - 2 = 4 </s>``
and the teacher's chain of thought ``<s> 3 + 3 = 6 , 6 - 2 = 4 so 4 </s>`` (the rationale,
then ``so`` and the answer, as an LLM prompted with chain-of-thought answers).

**The models.** :class:`~reference_impls.common.text.Seq2SeqTransformer`: the teacher
:func:`reasoning_teacher_model` (width 64, 4 heads, 2 + 2 layers) and the student
:func:`reasoning_student` (width 32, 2 heads, one layer each). :func:`reasoning_teacher`
trains the teacher on the chains of thought of the training problems (1,000 steps of 64,
Adam at lr 2e-3 with a cosine schedule: 190 s of wall time, 65 s of CPU time, at load 7;
it then answers all 500 test problems of the notebook's data right) and caches it
with :func:`reference_impls.common.experiment.cached_model`; :func:`teacher_outputs`
decodes it greedily and :func:`split_chains` splits each output into the rationale and
the label, as the paper parses its LLM's answers.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from reference_impls.common.experiment import cached_model
from reference_impls.common.text import (
    BOS,
    EOS,
    PAD,
    Seq2SeqSupervised,
    Seq2SeqTransformer,
    fit,
    greedy_decode,
    strip,
)
from reference_impls.common.validation import at_least, one_of

MAX_VALUE = 20
ADD_VERBS = ("buys", "finds", "gets")
SUBTRACT_VERBS = ("gives", "loses", "eats")
NAMES = ("ann", "bob", "eve", "sam")
OBJECTS = ("apples", "coins", "pens")
NUMBERS = tuple(str(n) for n in range(MAX_VALUE + 1))
LABEL_PREFIX, RATIONALE_PREFIX = 1, 2
SOURCE_VOCAB = (
    "<pad>", "[label]", "[rationale]", *NAMES, "has", *OBJECTS, *ADD_VERBS, *SUBTRACT_VERBS,
    ",", ".", "how", "many", "?", *NUMBERS,
)  # fmt: skip
TARGET_VOCAB = ("<pad>", "<s>", "</s>", *NUMBERS, "+", "-", "=", ",", "so")
SO = TARGET_VOCAB.index("so")
_SOURCE = {w: i for i, w in enumerate(SOURCE_VOCAB)}
_TARGET = {w: i for i, w in enumerate(TARGET_VOCAB)}


@dataclass(frozen=True)
class WordProblems:
    """Word problems as padded ids, train and test (module docstring).

    Attributes:
        src_train, src_test: ``[N, S]`` int64 source ids (without a task prefix), padded with 0.
        label_train, label_test: ``[N, 3]`` int64 label targets ``<s> y </s>``.
        rationale_train, rationale_test: ``[N, R]`` int64 rationale targets, padded.
        answer_train, answer_test: ``[N]`` int64 the answers $y$ as numbers.
    """

    src_train: torch.Tensor
    label_train: torch.Tensor
    rationale_train: torch.Tensor
    answer_train: torch.Tensor
    src_test: torch.Tensor
    label_test: torch.Tensor
    rationale_test: torch.Tensor
    answer_test: torch.Tensor

    def chain_of_thought(self, split: str = "train") -> torch.Tensor:
        """``<s> rationale so y </s>`` rows: what the teacher is trained to write."""
        one_of("split", split, ("train", "test"))
        rationale = self.rationale_train if split == "train" else self.rationale_test
        answer = self.answer_train if split == "train" else self.answer_test
        rows = [(*strip(r), SO, number_id(int(a))) for r, a in zip(rationale, answer, strict=True)]
        return pad_targets(rows)

    def subset(self, n: int) -> WordProblems:
        """The first ``n`` training problems (the few labelled ones) and the same test set."""
        at_least("n", n, 1)
        return WordProblems(
            self.src_train[:n],
            self.label_train[:n],
            self.rationale_train[:n],
            self.answer_train[:n],
            self.src_test,
            self.label_test,
            self.rationale_test,
            self.answer_test,
        )


def number_id(value: int) -> int:
    """The target id of a number 0 ... 20."""
    return _TARGET[str(value)]


def pad_targets(rows: list[tuple[int, ...]]) -> torch.Tensor:
    """Target rows (ids without ``<s>``/``</s>``) framed as ``<s> ... </s>`` and right-padded."""
    width = max(len(row) for row in rows) + 2
    out = torch.zeros(len(rows), width, dtype=torch.int64)
    for i, row in enumerate(rows):
        out[i, : len(row) + 2] = torch.tensor((BOS, *row, EOS))
    return out


def source_words(ids: torch.Tensor) -> str:
    """A source row as words (padding left out)."""
    return " ".join(SOURCE_VOCAB[int(i)] for i in ids if int(i) != PAD)


def target_words(ids: torch.Tensor) -> str:
    """A target or decoded row as words, up to its first ``</s>``."""
    return " ".join(TARGET_VOCAB[i] for i in strip(ids))


def _problem(
    rng: np.random.Generator, max_steps: int, max_amount: int
) -> tuple[list[str], list[str], int]:
    value = int(rng.integers(1, 10))
    words = [str(rng.choice(NAMES)), "has", str(value), str(rng.choice(OBJECTS))]
    rationale: list[str] = []
    for step in range(int(rng.integers(2, max_steps + 1))):
        amount = int(rng.integers(1, max_amount + 1))
        verbs = [v for v in ADD_VERBS if value + amount <= MAX_VALUE]
        verbs += [v for v in SUBTRACT_VERBS if value - amount >= 0]
        verb = str(rng.choice(verbs))
        new = value + amount if verb in ADD_VERBS else value - amount
        words += [",", verb, str(amount)]
        rationale += [","] if step else []
        rationale += [str(value), "+" if verb in ADD_VERBS else "-", str(amount), "=", str(new)]
        value = new
    return [*words, ".", "how", "many", "?"], rationale, value


def load_word_problems(
    seed: int = 0,
    num_train: int = 2000,
    num_test: int = 500,
    max_steps: int = 2,
    max_amount: int = 3,
) -> WordProblems:
    """The generated word problems (module docstring), decided by ``seed``; test problems are
    unseen in training."""
    at_least("num_train", num_train, 1)
    at_least("num_test", num_test, 1)
    at_least("max_steps", max_steps, 2)
    at_least("max_amount", max_amount, 1)
    rng = np.random.default_rng(seed)
    seen: set[tuple[str, ...]] = set()
    sources, rationales, answers = [], [], []
    while len(sources) < num_train + num_test:
        words, rationale, answer = _problem(rng, max_steps, max_amount)
        if tuple(words) in seen:
            continue
        seen.add(tuple(words))
        sources.append([_SOURCE[w] for w in words])
        rationales.append(tuple(_TARGET[w] for w in rationale))
        answers.append(answer)
    src = torch.zeros(len(sources), max(map(len, sources)), dtype=torch.int64)
    for i, row in enumerate(sources):
        src[i, : len(row)] = torch.tensor(row)
    labels = pad_targets([(number_id(a),) for a in answers])
    rationale = pad_targets(rationales)
    answer = torch.tensor(answers)
    n = num_train
    return WordProblems(
        src[:n],
        labels[:n],
        rationale[:n],
        answer[:n],
        src[n:],
        labels[n:],
        rationale[n:],
        answer[n:],
    )


def with_prefix(src: torch.Tensor, prefix: int) -> torch.Tensor:
    """Source ids with a task-prefix token in front (``[label]`` or ``[rationale]``)."""
    column = torch.full((src.shape[0], 1), prefix, dtype=src.dtype, device=src.device)
    return torch.cat([column, src], dim=1)


def reasoning_teacher_model() -> Seq2SeqTransformer:
    """Width 64, 4 heads, 2 + 2 layers."""
    return Seq2SeqTransformer(len(SOURCE_VOCAB), len(TARGET_VOCAB), 64, 4, 2, 2, 128)


def reasoning_student() -> Seq2SeqTransformer:
    """Width 32, 2 heads, one encoder and one decoder layer."""
    return Seq2SeqTransformer(len(SOURCE_VOCAB), len(TARGET_VOCAB), 32, 2, 1, 1, 64)


def split_chains(decoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded chains of thought ``[B, L]`` (``rationale so y </s>``) as (label targets,
    rationale targets).

    The rationale is what comes before ``so``, the label the token after it; an output
    without ``so`` (or without a token after it) gets its last token as the label.
    """
    labels, rationales = [], []
    for row in decoded:
        tokens = strip(row)
        if SO in tokens:
            cut = tokens.index(SO)
            rationale, after = tokens[:cut], tokens[cut + 1 :]
        else:
            rationale, after = tokens, tokens[-1:]
        labels.append(after[:1] or (number_id(0),))
        rationales.append(rationale or (number_id(0),))
    return pad_targets(labels), pad_targets(rationales)


@torch.no_grad()
def teacher_outputs(
    teacher: Seq2SeqTransformer, src: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's greedy chains of thought split into (label targets, rationale targets),
    as the paper parses its LLM's answers (:func:`split_chains`)."""
    return split_chains(greedy_decode(teacher, src, max_length=30))


@torch.no_grad()
def answer_accuracy(model: Seq2SeqTransformer, src: torch.Tensor, answer: torch.Tensor) -> float:
    """How often the first token the model writes after ``[label]`` is the answer."""
    decoded = greedy_decode(model, with_prefix(src, LABEL_PREFIX), max_length=1)
    return (decoded[:, 0] == (answer + number_id(0))).float().mean().item()


def reasoning_teacher(
    data: WordProblems, steps: int = 1000, seed: int = 0
) -> tuple[Seq2SeqTransformer, dict, bool]:
    """The chain-of-thought teacher, trained once and cached: ``(model, record, from_cache)``.

    The record holds the fraction of test problems whose decoded answer is right.
    """

    def train(model: Seq2SeqTransformer) -> dict:
        start = time.perf_counter()
        targets = data.chain_of_thought()
        epochs = max(1, math.ceil(steps * 64 / len(targets)))
        curve = fit(
            Seq2SeqSupervised(model), data.src_train, targets, epochs=epochs, lr=2e-3, seed=seed
        )
        labels, _ = teacher_outputs(model, data.src_test)
        accuracy = (labels[:, 1] == data.label_test[:, 1]).float().mean().item()
        return {"loss": curve, "test_accuracy": accuracy, "seconds": time.perf_counter() - start}

    digest = hashlib.sha256()
    for tensor in (data.src_train, data.rationale_train, data.answer_train, data.src_test):
        digest.update(tensor.numpy().tobytes())
    settings = {
        "data": digest.hexdigest(),
        "steps": steps,
        "lr": 2e-3,
    }
    return cached_model(
        reasoning_teacher_model, train, settings=settings, code_files=[__file__], seed=seed
    )


__all__ = [
    "LABEL_PREFIX",
    "RATIONALE_PREFIX",
    "SOURCE_VOCAB",
    "TARGET_VOCAB",
    "WordProblems",
    "answer_accuracy",
    "load_word_problems",
    "number_id",
    "pad_targets",
    "reasoning_student",
    "reasoning_teacher",
    "reasoning_teacher_model",
    "source_words",
    "split_chains",
    "target_words",
    "teacher_outputs",
    "with_prefix",
]
