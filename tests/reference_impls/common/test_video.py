"""The moving-digits clips and the tiny video models: determinism, masks, padding, bad input."""

from __future__ import annotations

import pytest
import torch

from reference_impls.common.video import (
    ClipClassifier,
    evenly_spaced_frames,
    few_frame_student,
    gather_frames,
    image_student,
    load_moving_digits,
    pack_clips,
    unpack_clips,
    video_teacher,
)


@pytest.fixture(scope="module")
def small():
    return load_moving_digits(seed=0, num_train=24, num_test=12)


def test_deterministic_from_the_seed_and_different_across_seeds(small):
    again = load_moving_digits(seed=0, num_train=24, num_test=12)
    other = load_moving_digits(seed=1, num_train=24, num_test=12)
    assert torch.equal(small.clips_train, again.clips_train)
    assert torch.equal(small.y_test, again.y_test)
    assert not torch.equal(small.clips_train, other.clips_train)


def test_shapes_labels_and_padding(small):
    assert small.clips_train.shape == (24, 10, 1, 16, 16)
    assert small.mask_train.shape == (24, 10) and small.mask_train.dtype == torch.bool
    lengths = small.mask_train.sum(1)
    assert int(lengths.min()) >= 6 and int(lengths.max()) <= 10
    # the real frames are a prefix, the padding is zero
    assert torch.equal(small.mask_train, torch.arange(10)[None] < lengths[:, None])
    assert small.clips_train[~small.mask_train].abs().sum() == 0
    assert torch.equal(small.y_train, 2 * small.digit_train + small.direction_train)
    assert small.num_classes == 10 and int(small.y_train.max()) < 10
    assert int(small.digit_train.max()) <= 4
    # the digit moves the way its label says: right (0) increases the column
    moves = small.positions_train[:, 1, 1] - small.positions_train[:, 0, 1]
    assert torch.equal(moves < 0, small.direction_train == 1)


def test_pack_and_unpack_round_trip(small):
    packed = pack_clips(small.clips_train, small.mask_train)
    assert packed.shape == (24, 10, 2, 16, 16)
    frames, mask = unpack_clips(packed)
    assert torch.equal(frames, small.clips_train) and torch.equal(mask, small.mask_train)


def test_evenly_spaced_frames_by_hand():
    mask = torch.arange(10)[None] < torch.tensor([[10], [7], [2]])
    # L = 10: ranks round(j * 9 / 2) = 0, 4 (4.5 rounds half to even), 9; L = 7: 0, 3, 6;
    # L = 2: 0, round(0.5) = 0, 1 (a short clip repeats frames)
    assert evenly_spaced_frames(mask, 3).tolist() == [[0, 4, 9], [0, 3, 6], [0, 0, 1]]
    # one frame: the middle real frame, floor((L - 1) / 2)
    assert evenly_spaced_frames(mask, 1).tolist() == [[4], [3], [0]]
    # a mask whose real frames are not a prefix: ranks count real frames only
    holes = torch.tensor([[False, True, False, True, True]])
    assert evenly_spaced_frames(holes, 2).tolist() == [[1, 4]]
    values = torch.arange(10.0)[None].expand(3, -1)
    assert gather_frames(values, evenly_spaced_frames(mask, 3)).tolist()[1] == [0.0, 3.0, 6.0]


@pytest.mark.parametrize("make", [video_teacher, few_frame_student, image_student])
def test_padded_frames_never_contribute(small, make):
    torch.manual_seed(0)
    model = make().eval()
    packed = pack_clips(small.clips_train[:6], small.mask_train[:6])
    garbage = packed.clone()
    padded = ~small.mask_train[:6]
    garbage[:, :, :-1][padded] = torch.randn_like(garbage[:, :, :-1][padded]) * 100
    assert not torch.equal(garbage, packed)
    out, out_garbage = model(packed), model(garbage)
    torch.testing.assert_close(out.logits, out_garbage.logits, rtol=0, atol=0)


def test_the_teacher_reads_every_real_frame_and_its_attention_ignores_padding(small):
    torch.manual_seed(0)
    out = video_teacher().eval()(pack_clips(small.clips_test[:5], small.mask_test[:5]))
    assert out.frame_embeddings.shape == (5, 10, 64)
    assert out.attention[~small.mask_test[:5]].abs().sum() == 0
    torch.testing.assert_close(out.attention.sum(1), torch.ones(5))
    student = few_frame_student(frames=3).eval()(
        pack_clips(small.clips_test[:5], small.mask_test[:5])
    )
    assert student.frame_index.shape == (5, 3) and bool(student.mask.all())


def test_the_image_student_reads_plain_images_too(small):
    torch.manual_seed(0)
    model = image_student().eval()
    packed = pack_clips(small.clips_test[:4], small.mask_test[:4])
    key = evenly_spaced_frames(small.mask_test[:4], 1)
    images = gather_frames(small.clips_test[:4], key)[:, 0]
    torch.testing.assert_close(model(packed).logits, model(images).logits)


def test_bad_input_names_the_argument(small):
    frames, mask = small.clips_train[:3], small.mask_train[:3]
    with pytest.raises(ValueError, match=r"mask must have shape \[3, 10\]"):
        pack_clips(frames, mask[:, :5])
    with pytest.raises(ValueError, match="mask must be boolean"):
        pack_clips(frames, mask.float())
    empty = mask.clone()
    empty[1] = False
    with pytest.raises(ValueError, match=r"at least one real frame in every clip; clips \[1\]"):
        pack_clips(frames, empty)
    with pytest.raises(ValueError, match=r"frames must have shape \[B, T, C, H, W\]"):
        pack_clips(frames[:, :, 0], mask)
    with pytest.raises(ValueError, match=r"clips must be packed clips of shape"):
        unpack_clips(frames)
    with pytest.raises(ValueError, match="at least one clip of one frame"):
        unpack_clips(torch.zeros(0, 10, 2, 16, 16))
    broken = pack_clips(frames, mask)
    broken[0, 0, -1, 0, 0] = 0.3
    with pytest.raises(ValueError, match="last channel must be the frame mask"):
        unpack_clips(broken)
    with pytest.raises(ValueError, match="x must be packed clips"):
        image_student()(frames[:, :, 0][:, :, None, None])
    with pytest.raises(ValueError, match="frames must be at least 1"):
        ClipClassifier(frames=0)
    with pytest.raises(ValueError, match="min_frames must be at most frames=4"):
        load_moving_digits(frames=4, min_frames=6)
    with pytest.raises(ValueError, match="travels"):
        load_moving_digits(speed=2.0)
    with pytest.raises(ValueError, match="digits must be between 1 and 10"):
        load_moving_digits(digits=11)


def test_the_shared_procedure_adds_the_weighted_terms_in_the_methods_order(small):
    import torch.nn.functional as F

    from reference_impls.common.video import ClipDistillation, model_width

    class Embedding(ClipDistillation):
        def __init__(self, student, teacher, hint_weight=0.5, label_weight=2.0):
            super().__init__(student, teacher, hint_weight=hint_weight, label_weight=label_weight)

        def distillation_terms(self, student, teacher):
            return {"hint": (student.embedding - teacher.embedding).pow(2).mean()}

    torch.manual_seed(0)
    student, teacher = video_teacher(), video_teacher()
    procedure = Embedding(student, teacher)
    clips, target = pack_clips(small.clips_train[:4], small.mask_train[:4]), small.y_train[:4]
    out = procedure.train()(clips, target)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert list(out) == ["loss", "ce", "hint"] and not out["hint"].requires_grad
    with torch.no_grad():
        s, t = student(clips), teacher(clips)
    hint = (s.embedding - t.embedding).pow(2).mean()
    torch.testing.assert_close(out["hint"], hint)
    torch.testing.assert_close(out["ce"], F.cross_entropy(s.logits, target))
    torch.testing.assert_close(out["loss"].detach(), 0.5 * hint + 2.0 * out["ce"])
    with pytest.raises(ValueError, match="hint_weight and label_weight must not all be zero"):
        Embedding(student, teacher, 0.0, 0.0)
    with pytest.raises(ValueError, match="target"):
        procedure(clips, target[:3])
    assert model_width(student, "student", None) == student.embedding_dim
    assert model_width(student, "student", None, "channels") == student.channels[-1]
    assert model_width(student, "student", 7) == 7
    with pytest.raises(ValueError, match="student_dim is required"):
        model_width(torch.nn.Linear(2, 2), "student", None)
