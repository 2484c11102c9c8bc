"""The spoken-digit data, the log-mel features and the tiny speech models."""

from __future__ import annotations

import math
import shutil
import wave

import numpy as np
import pytest
import torch

from reference_impls.common import speech
from reference_impls.common.speech import (
    CTCNet,
    EspeakNotFound,
    FrameEncoder,
    KeywordNet,
    LogMel,
    MaskedFramePredictor,
    SpeechBatch,
    ctc_loss,
    edit_distance,
    greedy_decode,
    hz_to_mel,
    length_mask,
    mel_filterbank,
    mel_to_hz,
    read_wav,
)

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is needed to synthesise the spoken digits (apt-get install espeak-ng)",
)


# ----------------------------------------------------------------------------- features


def test_htk_mel_scale_by_hand():
    # m(1000 Hz) = 2595 log10(1 + 1000/700) = 999.99 (the scale is built to be ~1000 there)
    assert float(hz_to_mel(torch.tensor(1000.0))) == pytest.approx(2595 * math.log10(17 / 7))
    assert float(hz_to_mel(torch.tensor(1000.0))) == pytest.approx(1000.0, abs=0.05)
    frequencies = torch.tensor([0.0, 440.0, 8000.0])
    assert torch.allclose(mel_to_hz(hz_to_mel(frequencies)), frequencies, atol=1e-3)


def test_mel_filters_are_triangles_with_their_peaks_at_the_centres():
    # n_fft 16 at 16 kHz: bins every 1 kHz; 2 filters between 0 and 8 kHz
    filters = mel_filterbank(16, 2, 16_000, 0.0, 8000.0)
    assert filters.shape == (9, 2)
    edges = mel_to_hz(torch.linspace(0.0, float(hz_to_mel(torch.tensor(8000.0))), 4).double())
    bins = torch.arange(9, dtype=torch.float64) * 1000.0
    for j in range(2):
        lower, centre, upper = edges[j], edges[j + 1], edges[j + 2]
        expected = torch.clamp(
            torch.minimum((bins - lower) / (centre - lower), (upper - bins) / (upper - centre)),
            min=0,
        )
        assert torch.allclose(filters[:, j], expected)
    assert torch.all(filters >= 0) and torch.all(filters <= 1)
    with pytest.raises(ValueError, match="f_min < f_max"):
        mel_filterbank(16, 2, 16_000, 0.0, 9000.0)


def test_log_mel_frames_and_bad_inputs():
    log_mel = LogMel()
    tone = torch.sin(2 * math.pi * 1000 * torch.arange(22_050) / 22_050)
    features = log_mel(tone, 22_050)
    assert features.shape == (1 + (22_050 - 1024) // 512, 32)
    raw = LogMel(normalize=False)(tone, 22_050)
    centres = mel_to_hz(
        torch.linspace(
            float(hz_to_mel(torch.tensor(50.0))), float(hz_to_mel(torch.tensor(8000.0))), 34
        )
    )[1:-1]
    assert int(raw.mean(0).argmax()) == int((centres - 1000).abs().argmin())  # the 1 kHz band
    with pytest.raises(
        ValueError, match="sample_rate mismatch: the waveform is sampled at 16000 Hz"
    ):
        log_mel(tone, 16_000)
    with pytest.raises(ValueError, match="empty sequence"):
        log_mel(torch.zeros(100), 22_050)
    with pytest.raises(ValueError, match="waveform must be 1-D"):
        log_mel(tone[None], 22_050)


def test_read_wav_refuses_another_sampling_rate(tmp_path):
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16_000)
        handle.writeframes((np.ones(1600) * 16384).astype("<i2").tobytes())
    assert torch.allclose(read_wav(path, 16_000), torch.full((1600,), 0.5))
    with pytest.raises(ValueError, match=r"sample_rate mismatch: .* sampled at 16000 Hz but 22050"):
        read_wav(path)


def test_silence_and_empty_waveforms_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        speech.trim_silence(torch.zeros(0))
    with pytest.raises(ValueError, match="silent"):
        speech.trim_silence(torch.zeros(100))
    assert speech.trim_silence(torch.tensor([0.0, 0.0, 1.0, 0.5, 0.0])).tolist() == [1.0, 0.5]


# ----------------------------------------------------------------------------- models


def _padded_batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 11, 32, generator=generator)
    mask = length_mask(torch.tensor([11, 6, 9]), 11)
    return x, mask


@pytest.mark.parametrize(
    "make",
    [
        lambda: KeywordNet(channels=8, hidden=8),
        lambda: CTCNet(channels=8, hidden=8),
        lambda: FrameEncoder(dim=16, heads=2, ffn=16),
    ],
)
def test_padded_frames_never_reach_a_real_frame(make):
    torch.manual_seed(0)
    model = make().eval()
    x, mask = _padded_batch()
    noisy = x.clone()
    noisy[~mask] = 1e3
    with torch.no_grad():
        a, b = model(x, mask), model(noisy, mask)
        alone = model(x[1:2, :6], mask[1:2, :6])  # the second utterance without padding
    if isinstance(model, FrameEncoder):
        assert torch.allclose(a.last, b.last, atol=1e-5)
        assert torch.allclose(a.last[1, :6], alone.last[0], atol=1e-5)
    else:
        assert torch.allclose(a.logits, b.logits, atol=1e-5)
        if isinstance(model, KeywordNet):
            assert torch.allclose(a.logits[1], alone.logits[0], atol=1e-5)
        else:
            assert torch.allclose(a.logits[1, :3], alone.logits[0], atol=1e-5)
            assert torch.all(a.logits[1, 3:] == 0)  # ceil(6 / 2) = 3 output frames


def test_models_refuse_a_mask_of_the_wrong_shape():
    x, mask = _padded_batch()
    with pytest.raises(ValueError, match=r"mask must be a boolean mask of shape \[3, 11\]"):
        KeywordNet(channels=8, hidden=8)(x, mask[:, :10])
    with pytest.raises(ValueError, match="empty sequence"):
        CTCNet(channels=8, hidden=8)(x, torch.zeros(3, 11, dtype=torch.bool))


def test_ctc_output_mask_and_loss_ignore_padding():
    model = CTCNet(channels=8, hidden=8)
    mask = length_mask(torch.tensor([7, 4]), 7)
    assert model.output_mask(mask).sum(1).tolist() == [4, 2]
    logits = torch.randn(2, 4, 11, requires_grad=True)
    out_mask = model.output_mask(mask)
    batch = SpeechBatch(
        torch.zeros(2, 7, 32), mask, torch.tensor([[3, 1], [5, -1]]), torch.tensor([2, 1])
    )
    value = ctc_loss(logits, out_mask, batch)
    (gradient,) = torch.autograd.grad(value, logits)
    assert torch.all(gradient[1, 2:] == 0)
    changed = logits.detach().clone()
    changed[1, 2:] = 100.0
    assert float(ctc_loss(changed, out_mask, batch)) == pytest.approx(
        float(value.detach()), rel=1e-6
    )


def test_greedy_decode_and_edit_distance_by_hand():
    # best path 0 4 4 0 2 0 2 (blank = 0): merge repeats, drop blanks -> labels 4 2 2 -> digits 3 1 1
    path = torch.tensor([0, 4, 4, 0, 2, 0, 2, 9])
    logits = torch.nn.functional.one_hot(path, 11).float()[None]
    mask = length_mask(torch.tensor([7]), 8)  # the last frame is padding
    assert greedy_decode(logits, mask) == [[3, 1, 1]]
    assert edit_distance([3, 1, 1], [3, 1, 4, 1]) == 1
    assert edit_distance([], [1, 2]) == 2


def test_masked_frame_prediction_reads_only_masked_real_frames():
    torch.manual_seed(0)
    model = MaskedFramePredictor(FrameEncoder(dim=16, heads=2, ffn=16))
    x, mask = _padded_batch()
    masked = model.frame_mask(mask, torch.Generator().manual_seed(1))
    assert not torch.any(masked & ~mask) and masked.any()
    value = model(x, mask, torch.Generator().manual_seed(1))["loss"]
    assert value > 0


# ----------------------------------------------------------------------------- data


def test_loaders_say_espeak_ng_is_needed(monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(EspeakNotFound, match="espeak-ng is needed"):
        speech.load_spoken_digits(per_digit=1)
    with pytest.raises(EspeakNotFound, match="apt-get install espeak-ng"):
        speech.load_digit_sequences(count=4)


@needs_espeak
def test_spoken_digits_are_deterministic_and_padded(tmp_path):
    a = speech.load_spoken_digits(seed=3, per_digit=2, cache_dir=tmp_path)
    b = speech.load_spoken_digits(seed=3, per_digit=2, cache_dir=tmp_path)  # from the cache
    c = speech.load_spoken_digits(seed=4, per_digit=2, cache_dir=tmp_path)
    assert len(a.x_train) == 15 and len(a.x_test) == 5
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.utterances_train != c.utterances_train
    assert sorted(a.y_train.tolist() + a.y_test.tolist()) == sorted(list(range(10)) * 2)
    mask = a.mask_train
    assert torch.all(a.x_train[~mask] == 0)
    assert torch.equal(mask.sum(1), a.lengths_train)


@needs_espeak
def test_digit_sequences_hold_padded_transcripts(tmp_path):
    data = speech.load_digit_sequences(seed=0, count=8, cache_dir=tmp_path)
    assert data.y_train.dim() == 2 and len(data.x_train) == 6
    for targets, length, utterance in zip(
        data.y_train, data.target_lengths_train, data.utterances_train, strict=True
    ):
        digits = targets[: int(length)].tolist()
        assert 2 <= len(digits) <= 4 and torch.all(targets[int(length) :] == -1)
        assert utterance.text == " ".join(speech.DIGIT_WORDS[d] for d in digits)
