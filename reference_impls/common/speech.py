r"""Spoken digits synthesised by ``espeak-ng``, log-mel features in plain torch, tiny speech models.

**Data.** Debian's ``espeak-ng`` (a formant synthesiser, deterministic: the same text,
voice, speed and pitch give the same samples, byte for byte) speaks the digits
"zero" to "nine" at 22 050 Hz. Each utterance's voice (a language variant such as
``en-us`` or ``en-gb-scotland`` with a speaker variant ``+m1`` ... ``+f4``), speed
(``-s``, words per minute) and pitch (``-p``, 0-99) are drawn from a generator seeded
with ``seed``; the WAV files are cached under
``reference_impls.common.experiment.default_cache_dir() / "speech"`` (keyed by the
text, the parameters and the espeak-ng version) and read back with Python's ``wave``
module. Each waveform is trimmed of leading and trailing silence, scaled to peak 1,
multiplied by a random gain and given white noise at a signal-to-noise ratio drawn
from the seed:

$$
x = g\,\frac{s}{\max_n |s_n|} + \sigma\,\varepsilon,\quad
\sigma = \mathrm{rms}\!\left(g\,\frac{s}{\max_n |s_n|}\right) 10^{-\mathrm{SNR}/20},\quad
\varepsilon \sim \mathcal N(0, I).
$$

:func:`load_spoken_digits` gives one digit per utterance (the keyword task),
:func:`load_digit_sequences` two to four digits per utterance ("three one four", the
CTC task). Both return padded log-mel features with their lengths (:class:`SpeechSplit`).
Measured under load (a 2-core machine shared by about nine jobs, load average near 10):
the first build of both default sets (720 utterances synthesised) took 32 s (17 s and
15 s), a build from cached WAVs (reading them, adding the noise, computing the features)
2.3 s for both.

**Features** (:class:`LogMel`). Frames of ``n_fft = 1024`` samples (46 ms) every
``hop = 512`` samples (23 ms, 43 frames a second), Hann window, ``torch.stft`` without
centring (a frame never reads past the signal), power spectrum $|X_{t,k}|^2$ on the
bins $f_k = k\,f_s / n_{\mathrm{fft}}$. The mel filterbank is the HTK one (the formula
of torchaudio's ``melscale_fbanks(norm=None, mel_scale="htk")``):
$m(f) = 2595 \log_{10}(1 + f/700)$; ``n_mels + 2`` points equally spaced in mel between
$m(f_{\min})$ and $m(f_{\max})$, mapped back to Hz as $h_0 < \dots < h_{M+1}$; filter $j$
is the triangle

$$
W_{k,j} = \max\!\Big(0, \min\Big(\frac{f_k - h_{j-1}}{h_j - h_{j-1}},
  \frac{h_{j+1} - f_k}{h_{j+1} - h_j}\Big)\Big),\qquad
\mathrm{logmel}_{t,j} = \log\Big(10^{-6} + \sum_k |X_{t,k}|^2 W_{k,j}\Big),
$$

then each band is standardised over the utterance's frames (cepstral mean and variance
normalisation). Utterances are zero-padded to the longest; ``lengths`` says how many
frames are real and :func:`length_mask` turns them into the ``[B, T]`` boolean mask
(True = a real frame) every model and loss of the speech leaf takes.

**Models.** :class:`KeywordNet` (1-D convolutions over time, a GRU, a masked mean over
frames, a linear classifier) classifies an utterance; :class:`CTCNet` (the same body, a
linear layer per frame over ``blank + 10`` digits) is a CTC acoustic model;
:class:`FrameEncoder` (a linear projection, a convolutional positional embedding as in
HuBERT, post-norm transformer layers) returns every layer's hidden states, and
:class:`MaskedFramePredictor` pre-trains it by predicting masked log-mel frames (a
small self-supervised teacher). The recurrent models pack their sequences and the
inputs are zeroed at padded frames, so padded values never reach a real frame.
:func:`fit` is the one training loop (Adam, cosine schedule) for these models.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from reference_impls.common.models import ModelOutput
from reference_impls.common.training import set_seed
from reference_impls.common.validation import at_least, sequence_mask

SAMPLE_RATE = 22_050  # espeak-ng's output rate
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
BLANK = 0  # the CTC blank; digit d is label d + 1
NUM_CTC_LABELS = 11
VOICES = (
    "en",
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
)
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")


class EspeakNotFound(RuntimeError):
    """``espeak-ng`` is not installed: the spoken digits cannot be synthesised."""


# ----------------------------------------------------------------------------- synthesis


def espeak_executable() -> str:
    """The path of ``espeak-ng``, or :class:`EspeakNotFound` saying how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise EspeakNotFound(
            "espeak-ng is needed to synthesise the spoken digits (reference_impls.common.speech) "
            "but was not found on PATH; install it with `apt-get install espeak-ng` "
            "(scripts/test.sh does when run as root)"
        )
    return path


@functools.lru_cache(maxsize=1)
def espeak_version() -> str:
    """``espeak-ng --version``'s first line (part of the WAV cache key)."""
    result = subprocess.run(
        [espeak_executable(), "--version"], capture_output=True, text=True, check=True
    )
    return result.stdout.strip().splitlines()[0]


@dataclass(frozen=True)
class Utterance:
    """What espeak-ng is asked to say, and how."""

    text: str
    voice: str  # e.g. "en-us+f2"
    speed: int  # words per minute (-s)
    pitch: int  # 0-99 (-p)


def speech_cache_dir(cache_dir: Path | str | None = None) -> Path:
    """Where the WAV files are cached: ``<teacher cache>/speech`` unless given."""
    from reference_impls.common.experiment import default_cache_dir

    return Path(cache_dir) if cache_dir is not None else default_cache_dir() / "speech"


def synthesize(utterance: Utterance, cache_dir: Path | str | None = None) -> Path:
    """The WAV file of ``utterance``: synthesised by espeak-ng once, then read from the cache."""
    executable = espeak_executable()
    key = (
        f"{espeak_version()}|{utterance.text}|{utterance.voice}|{utterance.speed}|{utterance.pitch}"
    )
    directory = speech_cache_dir(cache_dir)
    path = directory / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.wav"
    if path.is_file():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=directory, prefix=".", suffix=".wav")
    os.close(descriptor)
    command = [executable, "-v", utterance.voice, "-s", str(utterance.speed)]
    command += ["-p", str(utterance.pitch), "-w", name, utterance.text]
    try:
        subprocess.run(command, check=True, capture_output=True)
        os.replace(name, path)  # atomic: a reader never sees half a file
    finally:
        Path(name).unlink(missing_ok=True)
    return path


def read_wav(path: Path | str, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A mono 16-bit WAV file as float32 samples in [-1, 1]; its rate must be ``sample_rate``."""
    with wave.open(str(path), "rb") as handle:
        rate, channels, width = handle.getframerate(), handle.getnchannels(), handle.getsampwidth()
        frames = handle.readframes(handle.getnframes())
    if rate != sample_rate:
        raise ValueError(
            f"sample_rate mismatch: {path} is sampled at {rate} Hz but {sample_rate} Hz "
            "was expected (resample it, or build LogMel for that rate)"
        )
    if channels != 1 or width != 2:
        raise ValueError(
            f"{path} must be mono 16-bit PCM, got {channels} channels of {8 * width} bits"
        )
    return torch.from_numpy(np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0)


def trim_silence(waveform: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """The part of ``waveform`` between the first and last sample louder than ``threshold`` x peak."""
    if waveform.dim() != 1 or waveform.numel() == 0:
        raise ValueError(
            f"waveform must be a non-empty 1-D signal, got shape {tuple(waveform.shape)}"
        )
    loud = (waveform.abs() > threshold * waveform.abs().max()).nonzero().flatten()
    if loud.numel() == 0:
        raise ValueError("waveform is silent (no sample above the threshold): an empty utterance")
    return waveform[int(loud[0]) : int(loud[-1]) + 1]


def add_noise(
    waveform: torch.Tensor, snr_db: float, gain: float, generator: torch.Generator
) -> torch.Tensor:
    """Peak-normalised ``waveform`` times ``gain`` plus white noise at ``snr_db`` (module docstring)."""
    clean = gain * waveform / waveform.abs().max()
    sigma = clean.pow(2).mean().sqrt() * 10 ** (-snr_db / 20)
    return clean + sigma * torch.randn(clean.shape, generator=generator)


# ----------------------------------------------------------------------------- features


def hz_to_mel(frequency: torch.Tensor) -> torch.Tensor:
    """HTK mel scale: $2595 \\log_{10}(1 + f/700)$."""
    return 2595.0 * torch.log10(1.0 + frequency / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular HTK filters ``[n_fft // 2 + 1, n_mels]`` (module docstring), float64."""
    at_least("n_mels", n_mels, 1)
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"need 0 <= f_min < f_max <= sample_rate / 2 = {sample_rate / 2}, got f_min={f_min}, "
            f"f_max={f_max}"
        )
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    edges = torch.linspace(
        float(hz_to_mel(torch.tensor(f_min))), float(hz_to_mel(torch.tensor(f_max))), n_mels + 2
    ).double()
    hz = mel_to_hz(edges)
    lower, centre, upper = hz[:-2], hz[1:-1], hz[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


class LogMel(nn.Module):
    """Log-mel features of a 1-D waveform: ``[frames, n_mels]`` (module docstring).

    Args:
        sample_rate: the rate the filterbank is made for; a waveform given with
            another rate is refused.
        n_fft, hop: frame length and shift in samples.
        n_mels, f_min, f_max: the filterbank.
        normalize: standardise each band over the utterance's frames.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = 1024,
        hop: int = 512,
        n_mels: int = 32,
        f_min: float = 50.0,
        f_max: float | None = 8000.0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.sample_rate, self.n_fft, self.hop, self.normalize = sample_rate, n_fft, hop, normalize
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        filters = mel_filterbank(n_fft, n_mels, sample_rate, f_min, f_max).float()
        self.register_buffer("filters", filters, persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames of a signal of ``num_samples`` samples (no centring)."""
        return 1 + (num_samples - self.n_fft) // self.hop if num_samples >= self.n_fft else 0

    def forward(self, waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
        if sample_rate != self.sample_rate:
            raise ValueError(
                f"sample_rate mismatch: the waveform is sampled at {sample_rate} Hz but this "
                f"LogMel was built for {self.sample_rate} Hz"
            )
        if waveform.dim() != 1:
            raise ValueError(f"waveform must be 1-D [samples], got shape {tuple(waveform.shape)}")
        if self.num_frames(waveform.numel()) < 1:
            raise ValueError(
                f"waveform has {waveform.numel()} samples, fewer than one frame "
                f"(n_fft={self.n_fft}): an empty sequence"
            )
        spectrum = torch.stft(
            waveform.float(),
            self.n_fft,
            self.hop,
            window=self.window,
            center=False,
            return_complex=True,
        )
        power = spectrum.abs().pow(2).T  # [frames, bins]
        features = torch.log(power @ self.filters + 1e-6)
        if self.normalize:
            features = (features - features.mean(0)) / (features.std(0, unbiased=False) + 1e-5)
        return features


def length_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """``[B, T]`` boolean mask, True at the first ``lengths[b]`` positions of row ``b``."""
    max_length = int(lengths.max()) if max_length is None else max_length
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def pad_features(features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``[T_i, F]`` feature matrices into ``[N, T_max, F]`` and their lengths ``[N]``."""
    if not features:
        raise ValueError("features must hold at least one utterance, got none")
    lengths = torch.tensor([len(f) for f in features])
    padded = torch.zeros(len(features), int(lengths.max()), features[0].shape[1])
    for row, matrix in enumerate(features):
        padded[row, : len(matrix)] = matrix
    return padded, lengths


# ----------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class SpeechSplit:
    """Padded log-mel utterances with their labels, train and test.

    Attributes:
        x_train, x_test: ``[N, T, n_mels]`` log-mel features, zero at padded frames.
        lengths_train, lengths_test: ``[N]`` int64, real frames per utterance.
        y_train, y_test: ``[N]`` digit of each utterance (keyword task), or ``[N, L]``
            digit sequences padded with ``-1`` (CTC task).
        target_lengths_train, target_lengths_test: ``[N]`` digits per utterance (1 for
            the keyword task).
        utterances_train, utterances_test: what espeak-ng was asked to say, and how.
        num_classes: 10 digits.
    """

    x_train: torch.Tensor
    lengths_train: torch.Tensor
    y_train: torch.Tensor
    target_lengths_train: torch.Tensor
    x_test: torch.Tensor
    lengths_test: torch.Tensor
    y_test: torch.Tensor
    target_lengths_test: torch.Tensor
    utterances_train: tuple[Utterance, ...]
    utterances_test: tuple[Utterance, ...]
    num_classes: int = 10

    @property
    def mask_train(self) -> torch.Tensor:
        return length_mask(self.lengths_train, self.x_train.shape[1])

    @property
    def mask_test(self) -> torch.Tensor:
        return length_mask(self.lengths_test, self.x_test.shape[1])


def draw_utterances(texts: Sequence[str], generator: np.random.Generator) -> list[Utterance]:
    """One voice, variant, speed (130-210 wpm) and pitch (20-80) per text, drawn from ``generator``."""
    utterances = []
    for text in texts:
        voice = f"{VOICES[generator.integers(len(VOICES))]}+{VARIANTS[generator.integers(len(VARIANTS))]}"
        speed, pitch = int(generator.integers(130, 211)), int(generator.integers(20, 81))
        utterances.append(Utterance(text, voice, speed, pitch))
    return utterances


def waveform_of(
    utterance: Utterance,
    generator: torch.Generator,
    snr_db: tuple[float, float] = (10.0, 30.0),
    cache_dir: Path | str | None = None,
) -> torch.Tensor:
    """The trimmed, noisy waveform of one utterance (SNR and gain drawn from ``generator``)."""
    clean = trim_silence(read_wav(synthesize(utterance, cache_dir)))
    low, high = snr_db
    draws = torch.rand(2, generator=generator, dtype=torch.float64)
    snr = low + (high - low) * float(draws[0])
    gain = 0.5 + 0.5 * float(draws[1])
    return add_noise(clean, snr, gain, generator)


def _build(
    texts: Sequence[str],
    targets: Sequence[Sequence[int]],
    seed: int,
    test_fraction: float,
    snr_db: tuple[float, float],
    cache_dir: Path | str | None,
    features: LogMel | None,
) -> SpeechSplit:
    espeak_executable()  # fail first, and clearly, without espeak-ng
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    utterances = draw_utterances(texts, rng)
    generator = torch.Generator().manual_seed(seed)
    log_mel = features or LogMel()
    mels = [log_mel(waveform_of(u, generator, snr_db, cache_dir), SAMPLE_RATE) for u in utterances]
    order = torch.from_numpy(rng.permutation(len(texts)))
    n_test = max(1, round(test_fraction * len(texts)))
    parts = []
    for rows in (order[n_test:], order[:n_test]):
        x, lengths = pad_features([mels[int(i)] for i in rows])
        target_lengths = torch.tensor([len(targets[int(i)]) for i in rows])
        y = torch.full((len(rows), int(target_lengths.max())), -1, dtype=torch.long)
        for row, i in enumerate(rows):
            y[row, : len(targets[int(i)])] = torch.tensor(targets[int(i)])
        parts.append((x, lengths, y, target_lengths, tuple(utterances[int(i)] for i in rows)))
    (xa, la, ya, ta, ua), (xb, lb, yb, tb, ub) = parts
    if int(ta.max()) == 1:  # one digit per utterance: class indices [N]
        ya, yb = ya[:, 0], yb[:, 0]
    return SpeechSplit(xa, la, ya, ta, xb, lb, yb, tb, ua, ub)


def load_spoken_digits(
    seed: int = 0,
    per_digit: int = 40,
    test_fraction: float = 0.25,
    snr_db: tuple[float, float] = (10.0, 30.0),
    cache_dir: Path | str | None = None,
) -> SpeechSplit:
    """``per_digit`` utterances of each digit word, one digit each (the keyword task).

    Deterministic from ``seed`` (voices, speeds, pitches, noise, split). Raises
    :class:`EspeakNotFound` when espeak-ng is not installed.
    """
    at_least("per_digit", per_digit, 1)
    digits = [d for d in range(10) for _ in range(per_digit)]
    texts = [DIGIT_WORDS[d] for d in digits]
    return _build(texts, [[d] for d in digits], seed, test_fraction, snr_db, cache_dir, None)


def load_digit_sequences(
    seed: int = 0,
    count: int = 320,
    min_digits: int = 2,
    max_digits: int = 4,
    test_fraction: float = 0.25,
    snr_db: tuple[float, float] = (10.0, 30.0),
    cache_dir: Path | str | None = None,
) -> SpeechSplit:
    """``count`` utterances of ``min_digits``-``max_digits`` digits ("three one four"), the CTC task.

    ``y_*`` are the digit sequences padded with -1, ``target_lengths_*`` their lengths.
    Deterministic from ``seed``; raises :class:`EspeakNotFound` without espeak-ng.
    """
    at_least("count", count, 2)
    at_least("min_digits", min_digits, 1)
    at_least("max_digits", max_digits, min_digits)
    rng = np.random.default_rng(10_000 + seed)
    sequences = [
        [int(d) for d in rng.integers(0, 10, int(rng.integers(min_digits, max_digits + 1)))]
        for _ in range(count)
    ]
    texts = [" ".join(DIGIT_WORDS[d] for d in sequence) for sequence in sequences]
    return _build(texts, sequences, seed, test_fraction, snr_db, cache_dir, None)


# ----------------------------------------------------------------------------- models


def _masked_input(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    sequence_mask("mask", mask, features.shape[:2])
    return features * mask[..., None].to(features.dtype)


class RecurrentBody(nn.Module):
    """Two 1-D convolutions over time (kernel 5; the second with ``stride``) and a GRU.

    With ``stride`` s the outputs are at every s-th frame: an utterance of L frames
    has ``ceil(L / s)`` output frames (:meth:`output_mask`).
    """

    def __init__(
        self,
        n_mels: int,
        channels: int,
        hidden: int,
        layers: int,
        bidirectional: bool,
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.stride = at_least("stride", stride, 1)
        self.conv1 = nn.Conv1d(n_mels, channels, 5, padding=2)
        self.conv2 = nn.Conv1d(channels, channels, 5, stride=stride, padding=2)
        self.gru = nn.GRU(
            channels, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional
        )
        self.output_dim = hidden * (2 if bidirectional else 1)

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = _masked_input(features, mask)
        # zero every padded position after each convolution: the next one would read it
        hidden = torch.relu(self.conv1(x.transpose(1, 2))) * mask[:, None].to(x.dtype)
        mask = self.output_mask(mask)
        conv = torch.relu(self.conv2(hidden)).transpose(1, 2) * mask[..., None].to(x.dtype)
        lengths = mask.sum(1).cpu()
        packed = pack_padded_sequence(conv, lengths, batch_first=True, enforce_sorted=False)
        output, _ = self.gru(packed)
        recurrent, _ = pad_packed_sequence(output, batch_first=True, total_length=mask.shape[1])
        return conv, recurrent

    def output_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The ``[B, ceil(T / stride)]`` mask of the output frames for an input ``mask``."""
        lengths = torch.div(mask.sum(1) + self.stride - 1, self.stride, rounding_mode="floor")
        return length_mask(lengths, -(-mask.shape[1] // self.stride))


class KeywordNet(nn.Module):
    """Utterance classifier: :class:`RecurrentBody`, masked mean over frames, linear layer.

    ``forward(features [B, T, n_mels], mask [B, T]) -> ModelOutput`` with the logits
    ``[B, 10]``, the per-frame ``features`` (convolution, GRU) and the pooled
    ``embedding``.
    """

    def __init__(
        self,
        n_mels: int = 32,
        channels: int = 64,
        hidden: int = 64,
        layers: int = 1,
        bidirectional: bool = True,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.body = RecurrentBody(n_mels, channels, hidden, layers, bidirectional)
        self.fc = nn.Linear(self.body.output_dim, num_classes)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        conv, recurrent = self.body(features, mask)
        weights = mask[..., None].to(recurrent.dtype)
        pooled = (recurrent * weights).sum(1) / weights.sum(1)
        return ModelOutput(self.fc(pooled), [conv, recurrent], [], pooled)


class CTCNet(nn.Module):
    """CTC acoustic model: :class:`RecurrentBody` (stride 2: 46 ms per output frame), a linear layer.

    ``forward(features, mask) -> ModelOutput`` whose ``logits`` are ``[B, T', 11]``
    (blank = 0, digit d = d + 1; ``T' = ceil(T / 2)``, :meth:`output_mask` says which
    are real), zero at padded frames, and ``features`` the per-frame convolution and
    GRU outputs.
    """

    def __init__(
        self,
        n_mels: int = 32,
        channels: int = 64,
        hidden: int = 64,
        layers: int = 2,
        bidirectional: bool = True,
        stride: int = 2,
    ) -> None:
        super().__init__()
        self.body = RecurrentBody(n_mels, channels, hidden, layers, bidirectional, stride)
        self.fc = nn.Linear(self.body.output_dim, NUM_CTC_LABELS)

    def output_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return self.body.output_mask(mask)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        conv, recurrent = self.body(features, mask)
        keep = self.output_mask(mask)[..., None].to(recurrent.dtype)
        return ModelOutput(self.fc(recurrent) * keep, [conv, recurrent])


def keyword_teacher() -> KeywordNet:
    return KeywordNet(channels=64, hidden=64)


def keyword_student() -> KeywordNet:
    return KeywordNet(channels=16, hidden=16)


def ctc_teacher() -> CTCNet:
    return CTCNet(channels=64, hidden=96, layers=1)


def ctc_student() -> CTCNet:
    return CTCNet(channels=24, hidden=24, layers=1)


@dataclass
class EncoderOutput:
    """Hidden states of a :class:`FrameEncoder`: index 0 the projected input, i the i-th layer."""

    hidden_states: list[torch.Tensor]

    @property
    def last(self) -> torch.Tensor:
        return self.hidden_states[-1]


class FrameEncoder(nn.Module):
    """A small transformer over log-mel frames (HuBERT's layout at toy scale).

    Linear projection of each frame, a grouped convolution over time added as the
    positional embedding (HuBERT's ``pos_conv``, kernel 5 here), a layer norm, then
    ``layers`` post-norm transformer layers (GELU, no dropout) that ignore padded
    frames. ``frame_mask`` (``[B, T]``, True = masked) replaces those frames'
    projections by a learned embedding, for masked prediction.
    """

    def __init__(
        self, n_mels: int = 32, dim: int = 64, layers: int = 3, heads: int = 4, ffn: int = 128
    ) -> None:
        super().__init__()
        self.dim = dim
        self.project = nn.Linear(n_mels, dim)
        self.position = nn.Conv1d(dim, dim, 5, padding=2, groups=4)
        self.norm = nn.LayerNorm(dim)
        self.mask_embedding = nn.Parameter(torch.randn(dim) * 0.1)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim, heads, ffn, dropout=0.0, activation="gelu", batch_first=True
            )
            for _ in range(layers)
        )

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> EncoderOutput:
        x = _masked_input(features, mask)
        keep = mask[..., None].to(x.dtype)
        h = self.project(x)
        if frame_mask is not None:
            h = torch.where(frame_mask[..., None], self.mask_embedding.to(h.dtype), h)
        h = h * keep
        h = self.norm(h + F.gelu(self.position(h.transpose(1, 2)).transpose(1, 2))) * keep
        states = [h]
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=~mask) * keep
            states.append(h)
        return EncoderOutput(states)


class MaskedFramePredictor(nn.Module):
    """Self-supervised pre-training of a :class:`FrameEncoder`: predict masked log-mel frames.

    Spans of ``span`` frames starting at a fraction ``start_probability`` of the real
    frames are masked (HuBERT's masking, with 8% and 10 frames there); a linear head
    on the last layer predicts the masked frames' log-mels, L1 on masked real frames.
    HuBERT predicts k-means cluster ids instead (a deviation for a seconds-long
    teacher; TERA and Mockingjay, also in s3prl, reconstruct frames like this).
    """

    def __init__(
        self, encoder: FrameEncoder, span: int = 3, start_probability: float = 0.15
    ) -> None:
        super().__init__()
        self.encoder, self.span, self.start_probability = encoder, span, start_probability
        self.head = nn.Linear(encoder.dim, encoder.project.in_features)

    def frame_mask(self, mask: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        starts = torch.rand(mask.shape, generator=generator) < self.start_probability
        # frame t is masked when a span starts in [t - span + 1, t]
        padded = F.pad(starts.float()[:, None], (self.span - 1, 0))
        spans = F.max_pool1d(padded, self.span, stride=1)[:, 0]
        return spans.bool() & mask

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        masked = self.frame_mask(mask, generator)
        prediction = self.head(self.encoder(features, mask, masked).last)
        error = (prediction - features).abs().mean(-1)
        loss = (error * masked).sum() / masked.sum().clamp(min=1)
        return {"loss": loss}


# ----------------------------------------------------------------------------- training


@dataclass
class SpeechBatch:
    """One mini-batch, trimmed to its longest utterance; ``rows`` index the split."""

    features: torch.Tensor
    mask: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    rows: torch.Tensor | None = None


def batches(
    data: SpeechSplit,
    batch_size: int,
    generator: torch.Generator | None = None,
    split: str = "train",
) -> Iterator[SpeechBatch]:
    """Mini-batches of a split, shuffled with ``generator`` (in order without one)."""
    x, lengths, y, target_lengths = (
        getattr(data, f"{name}_{split}") for name in ("x", "lengths", "y", "target_lengths")
    )
    order = (
        torch.randperm(len(x), generator=generator)
        if generator is not None
        else torch.arange(len(x))
    )
    for start in range(0, len(x), batch_size):
        rows = order[start : start + batch_size]
        frames = int(lengths[rows].max())
        yield SpeechBatch(
            x[rows, :frames],
            length_mask(lengths[rows], frames),
            y[rows],
            target_lengths[rows],
            rows,
        )


def fit(
    step: Callable[[SpeechBatch], dict[str, torch.Tensor]],
    module: nn.Module,
    data: SpeechSplit,
    *,
    epochs: int,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Adam on ``module``'s trainable parameters, cosine schedule; ``step(batch)`` gives the loss.

    Returns the mean of each term per epoch; ``module`` is left in eval mode.
    """
    set_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    parameters = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    total = epochs * math.ceil(len(data.x_train) / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    history = []
    for _ in range(epochs):
        module.train()
        sums: dict[str, float] = {}
        count = 0
        for batch in batches(data, batch_size, generator):
            terms = step(batch)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(parameters, 5.0)
            optimizer.step()
            scheduler.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            count += 1
        history.append({name: value / count for name, value in sums.items()})
    module.eval()
    return history


def ctc_loss(logits: torch.Tensor, mask: torch.Tensor, batch: SpeechBatch) -> torch.Tensor:
    """``torch.nn.functional.ctc_loss`` of ``[B, T, 11]`` logits on a batch's digit sequences.

    Per-utterance losses divided by their target lengths, then averaged (torch's
    ``reduction="mean"``); computed in at least float32.
    """
    log_probs = F.log_softmax(logits.float() if logits.dtype != torch.float64 else logits, -1)
    targets = batch.targets if batch.targets.dim() == 2 else batch.targets[:, None]
    return F.ctc_loss(
        log_probs.transpose(0, 1),
        (targets + 1).clamp(min=0),  # digit d -> label d + 1; padding (-1) -> 0, never read
        mask.sum(1),
        batch.target_lengths,
        blank=BLANK,
        zero_infinity=True,
    )


@torch.no_grad()
def keyword_logits(model: nn.Module, data: SpeechSplit, split: str = "test") -> torch.Tensor:
    """Utterance logits of a keyword model on a whole split, in order."""
    model.eval()
    return torch.cat([model(b.features, b.mask).logits for b in batches(data, 256, split=split)])


def keyword_accuracy(model: nn.Module, data: SpeechSplit, split: str = "test") -> float:
    labels = getattr(data, f"y_{split}")
    return float((keyword_logits(model, data, split).argmax(1) == labels).float().mean())


def greedy_decode(logits: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    """Best path: per-frame argmax, repeats merged, blanks dropped; digits (labels - 1)."""
    best = logits.argmax(-1)
    decoded = []
    for row, length in zip(best, mask.sum(1).tolist(), strict=True):
        path = row[:length].tolist()
        merged = [label for i, label in enumerate(path) if i == 0 or label != path[i - 1]]
        decoded.append([label - 1 for label in merged if label != BLANK])
    return decoded


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance between two label sequences."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


@torch.no_grad()
def digit_error_rate(model: nn.Module, data: SpeechSplit, split: str = "test") -> float:
    """Edit distance of the greedy decodes to the references, over the reference digits."""
    model.eval()
    errors = digits = 0
    for batch in batches(data, 256, split=split):
        logits = model(batch.features, batch.mask).logits
        hypotheses = greedy_decode(logits, model.output_mask(batch.mask))
        for hypothesis, target, length in zip(
            hypotheses, batch.targets, batch.target_lengths, strict=True
        ):
            reference = target[: int(length)].tolist()
            errors += edit_distance(hypothesis, reference)
            digits += len(reference)
    return errors / digits


# ----------------------------------------------------------------------------- cached teachers


def _code_files() -> list[str]:
    from reference_impls.common import training

    return [__file__, training.__file__]


def trained_keyword_teacher(
    data: SpeechSplit, data_seed: int = 0, epochs: int = 15, seed: int = 0
) -> tuple[KeywordNet, dict]:
    """:func:`keyword_teacher` trained by cross-entropy on ``data`` (cached): model, record."""

    def train_it(model: nn.Module) -> dict:
        def step(batch: SpeechBatch) -> dict[str, torch.Tensor]:
            return {
                "loss": F.cross_entropy(model(batch.features, batch.mask).logits, batch.targets)
            }

        history = fit(step, model, data, epochs=epochs, lr=3e-3, seed=seed)
        return {"loss": [h["loss"] for h in history], "accuracy": keyword_accuracy(model, data)}

    from reference_impls.common.experiment import cached_model

    settings = {
        "task": "keyword",
        "data_seed": data_seed,
        "train": len(data.x_train),
        "epochs": epochs,
    }
    model, record, _ = cached_model(
        keyword_teacher,
        train_it,
        settings=settings,
        code_files=_code_files(),
        seed=seed,
        device="cpu",
    )
    return model, record


def trained_ctc_teacher(
    data: SpeechSplit, data_seed: int = 0, epochs: int = 20, seed: int = 0
) -> tuple[CTCNet, dict]:
    """:func:`ctc_teacher` trained with the CTC loss on ``data`` (cached): model, record."""

    def train_it(model: nn.Module) -> dict:
        def step(batch: SpeechBatch) -> dict[str, torch.Tensor]:
            logits = model(batch.features, batch.mask).logits
            return {"loss": ctc_loss(logits, model.output_mask(batch.mask), batch)}

        history = fit(step, model, data, epochs=epochs, lr=3e-3, batch_size=16, seed=seed)
        return {"loss": [h["loss"] for h in history], "der": digit_error_rate(model, data)}

    from reference_impls.common.experiment import cached_model

    settings = {"task": "ctc", "data_seed": data_seed, "train": len(data.x_train), "epochs": epochs}
    model, record, _ = cached_model(
        ctc_teacher, train_it, settings=settings, code_files=_code_files(), seed=seed, device="cpu"
    )
    return model, record


def unlabelled(*splits: SpeechSplit) -> SpeechSplit:
    """The training utterances of several splits as one split without labels (zeros), for SSL."""
    features = [
        x[:n] for split in splits for x, n in zip(split.x_train, split.lengths_train, strict=True)
    ]
    x, lengths = pad_features(features)
    zeros = torch.zeros(len(x), dtype=torch.long)
    first = splits[0]
    return SpeechSplit(
        x,
        lengths,
        zeros,
        torch.ones_like(zeros),
        first.x_test,
        first.lengths_test,
        torch.zeros(len(first.x_test), dtype=torch.long),
        torch.ones(len(first.x_test), dtype=torch.long),
        (),
        (),
    )


def trained_ssl_teacher(
    data: SpeechSplit, data_seed: int = 0, epochs: int = 20, seed: int = 0
) -> tuple[FrameEncoder, dict]:
    """A 3-layer :class:`FrameEncoder` pre-trained by masked-frame prediction (cached)."""

    def train_it(model: nn.Module) -> dict:
        generator = torch.Generator().manual_seed(seed)

        def step(batch: SpeechBatch) -> dict[str, torch.Tensor]:
            return model(batch.features, batch.mask, generator)

        history = fit(step, model, data, epochs=epochs, lr=2e-3, seed=seed)
        return {"loss": [h["loss"] for h in history]}

    from reference_impls.common.experiment import cached_model

    settings = {
        "task": "masked-frames",
        "data_seed": data_seed,
        "train": len(data.x_train),
        "epochs": epochs,
    }
    model, record, _ = cached_model(
        lambda: MaskedFramePredictor(FrameEncoder()),
        train_it,
        settings=settings,
        code_files=_code_files(),
        seed=seed,
        device="cpu",
    )
    return model.encoder, record
