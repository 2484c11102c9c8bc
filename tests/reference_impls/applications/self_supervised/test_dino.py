"""DINO: the loss by hand, centring and its DDP all-reduce, the schedules, and a short distillation."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from reference_impls.applications.self_supervised.dino import (
    DINO,
    DINOLoss,
    momentum_schedule,
    multi_crop_forward,
    teacher_temperature_schedule,
)
from reference_impls.common.augmentations import (
    DINOHead,
    MultiCrop,
    SSLNetwork,
    ViewSettings,
    dino_network,
    embed,
)
from reference_impls.common.models import student_cnn, student_mlp
from reference_impls.common.training import linear_cka, train

ROOT = Path(__file__).resolve().parents[4]
# all views 8x8, for MLP backbones
MLP_CROPS = MultiCrop(local_crops=2, local_view=ViewSettings(size=8, scale=(0.2, 0.5)))


def test_value_by_hand_with_two_views():
    # one image, two views, two prototypes; student temperature 0.1, teacher 0.04, centre 0
    loss = DINOLoss(out_dim=2, num_crops=2)
    student = torch.tensor([[0.1, 0.0], [0.0, 0.2]])  # view 1, view 2
    teacher = torch.tensor([[0.02, 0.0], [0.0, 0.04]])
    q1 = torch.softmax(torch.tensor([0.5, 0.0]), 0)  # teacher view 1 at 0.04
    q2 = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    log_p1 = torch.log_softmax(torch.tensor([1.0, 0.0]), 0)  # student view 1 at 0.1
    log_p2 = torch.log_softmax(torch.tensor([0.0, 2.0]), 0)
    # the pairs (teacher 1, student 2) and (teacher 2, student 1); same-view pairs skipped
    expected = (-(q1 * log_p2).sum() - (q2 * log_p1).sum()) / 2
    torch.testing.assert_close(loss(student, teacher), expected)


def test_the_centre_moves_towards_the_teacher_mean_in_training_only():
    torch.manual_seed(0)
    loss = DINOLoss(out_dim=5, num_crops=4)
    student, teacher = torch.randn(4 * 3, 5), torch.randn(2 * 3, 5)
    loss.eval()(student, teacher)
    assert not loss.center.any()
    first = loss.train()(student, teacher)
    torch.testing.assert_close(loss.center, 0.1 * teacher.mean(0, keepdim=True))
    # the loss used the old centre (zero): a second call, with the moved centre, differs
    assert not torch.allclose(loss(student, teacher), first)
    torch.testing.assert_close(
        loss.center, 0.9 * 0.1 * teacher.mean(0, keepdim=True) + 0.1 * teacher.mean(0, keepdim=True)
    )


def test_centring_makes_the_loss_invariant_to_a_shift_of_the_teacher_common_to_the_centre():
    torch.manual_seed(0)
    student, teacher, shift = torch.randn(6, 7), torch.randn(4, 7), torch.randn(1, 7)
    plain, shifted = DINOLoss(7, num_crops=3).eval(), DINOLoss(7, num_crops=3).eval()
    plain.center.copy_(torch.randn(1, 7))
    shifted.center.copy_(plain.center + shift)
    torch.testing.assert_close(plain(student, teacher), shifted(student, teacher + shift))


def test_a_student_view_gets_no_gradient_from_the_teacher_on_the_same_view():
    # two crops only: student view 1 is pushed towards teacher view 2 alone
    torch.manual_seed(0)
    student, teacher = torch.randn(2 * 4, 6, requires_grad=True), torch.randn(2 * 4, 6)
    DINOLoss(6, num_crops=2)(student, teacher).backward()
    changed = teacher.clone()
    changed[:4] += 5 * torch.randn(4, 6)  # teacher view 1 changes
    student_2 = student.detach().clone().requires_grad_()
    DINOLoss(6, num_crops=2)(student_2, changed).backward()
    torch.testing.assert_close(student_2.grad[:4], student.grad[:4])  # view 1: unchanged
    assert not torch.allclose(student_2.grad[4:], student.grad[4:])


def test_the_teacher_temperature_warm_up_is_their_linspace_then_constant():
    loss = DINOLoss(
        4,
        warmup_teacher_temperature=0.04,
        teacher_temperature=0.07,
        warmup_teacher_temperature_epochs=30,
    )
    theirs = teacher_temperature_schedule(0.04, 0.07, 30, 100)
    assert [loss.teacher_temperature_at(e) for e in range(100)] == pytest.approx(list(theirs))
    assert loss.teacher_temperature_at(0) == 0.04 and loss.teacher_temperature_at(29) == 0.07
    loss.on_epoch_start(5, 100)
    torch.manual_seed(0)
    student, teacher = torch.randn(10 * 2, 4), torch.randn(2 * 2, 4)
    by_hand = DINOLoss(4, teacher_temperature=float(theirs[5]))
    torch.testing.assert_close(loss(student, teacher), by_hand(student, teacher))
    assert DINOLoss(4).teacher_temperature_at(0) == 0.04  # their defaults: no warm-up


def test_the_ema_momentum_follows_their_cosine_schedule_step_by_step():
    theirs = momentum_schedule(0.996, epochs=3, steps_per_epoch=4)
    assert theirs[0] == pytest.approx(0.996) and theirs[-1] < 1
    procedure = DINO(dino_network(student_mlp()), multi_crop=MLP_CROPS, steps_per_epoch=4)
    procedure.on_epoch_start(0, 3)
    assert [procedure.momentum_at(i) for i in range(12)] == pytest.approx(list(theirs))
    # their training-loop update, one step: teacher <- m teacher + (1 - m) student
    x = torch.randn(8, 1, 8, 8)
    procedure.train()(x)
    with torch.no_grad():
        for p in procedure.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in procedure.teacher.parameters()]
    procedure(x)  # applies the update of step 0 first
    m = theirs[0]
    for b, t, s in zip(
        before, procedure.teacher.parameters(), procedure.student.parameters(), strict=True
    ):
        torch.testing.assert_close(t, m * b + (1 - m) * s)


def test_steps_per_epoch_are_counted_when_not_given():
    procedure = DINO(dino_network(student_mlp()), multi_crop=MLP_CROPS)
    x = torch.randn(4, 1, 8, 8)
    procedure.on_epoch_start(0, 5)
    for _ in range(3):
        procedure.train()(x)
    assert procedure.momentum_at(2) == 0.996  # epoch 0: the base momentum
    procedure.on_epoch_start(1, 5)
    assert procedure.steps_per_epoch == 3
    assert procedure.momentum_at(3) == pytest.approx(momentum_schedule(0.996, 5, 3)[3])


def test_crops_of_one_resolution_go_through_together():
    torch.manual_seed(0)
    network = dino_network(student_cnn()).eval()
    views = [torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8), torch.randn(3, 1, 4, 4)]
    together = multi_crop_forward(network, views)
    apart = torch.cat([network(v).logits for v in views])
    assert together.shape == (9, 256)
    torch.testing.assert_close(together, apart)  # eval mode: batch norm does not mix them


_DDP_SCRIPT = """
import sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from reference_impls.applications.self_supervised.dino import DINOLoss

def work(rank, world, init_file, student, teacher, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    loss = DINOLoss(out_dim=teacher.shape[1], num_crops=4)
    # each process gets its own images: rows of both global views of its half of the batch
    half = teacher.shape[0] // 2 // world
    views_t = teacher.chunk(2)
    views_s = student.chunk(4)
    mine_t = torch.cat([v[rank * half:(rank + 1) * half] for v in views_t])
    mine_s = torch.cat([v[rank * half:(rank + 1) * half] for v in views_s])
    loss(mine_s, mine_t)
    loss(mine_s, mine_t)
    torch.save(loss.center, f"{out}.{rank}")
    dist.destroy_process_group()

if __name__ == "__main__":
    init_file, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    student, teacher = torch.randn(4 * 6, 5), torch.randn(2 * 6, 5)
    torch.save((student, teacher), f"{out}.inputs")
    mp.spawn(work, args=(2, init_file, student, teacher, out), nprocs=2, join=True)
"""


def test_the_centre_under_ddp_equals_the_single_process_centre_of_the_full_batch(tmp_path):
    script = tmp_path / "ddp_centre.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT))
    out = tmp_path / "centre"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "init"), str(out)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    student, teacher = torch.load(f"{out}.inputs")
    single = DINOLoss(out_dim=5, num_crops=4)
    single(student, teacher)
    single(student, teacher)
    for rank in (0, 1):
        torch.testing.assert_close(torch.load(f"{out}.{rank}"), single.center)
    assert single.center.abs().sum() > 0


def test_distilling_a_trained_teacher_moves_the_student_towards_it_more_than_dino_alone(
    digits, mlp_teacher, fast_crops
):
    # the teacher's head: a frozen random DINO head on its (class-separating) embedding
    torch.manual_seed(0)
    teacher = SSLNetwork(mlp_teacher, DINOHead(512, 64)).eval()
    subset = digits.with_train_subset(512)
    teacher_embedding = embed(mlp_teacher, digits.x_test)
    similarity = {}
    for name, with_teacher in (("alone", None), ("distilled", teacher)):
        torch.manual_seed(1)
        student = dino_network(student_mlp(), out_dim=64, use_bn=True)
        procedure = DINO(student, with_teacher, multi_crop=fast_crops, momentum=0.99)
        train(procedure, subset, epochs=4, lr=0.1, batch_size=128, seed=1, device="cpu")
        similarity[name] = linear_cka(embed(student, digits.x_test), teacher_embedding)
    assert similarity["distilled"] > similarity["alone"] + 0.02, similarity


def test_bad_inputs_are_named():
    loss = DINOLoss(out_dim=4, num_crops=3)
    with pytest.raises(ValueError, match="student_output must have shape"):
        loss(torch.randn(6, 5), torch.randn(4, 4))
    with pytest.raises(ValueError, match="not a multiple of num_crops=3"):
        loss(torch.randn(7, 4), torch.randn(4, 4))
    with pytest.raises(ValueError, match="teacher_output must hold the 2 global views"):
        loss(torch.randn(6, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match="num_crops must be at least 2"):
        DINOLoss(4, num_crops=1)
    with pytest.raises(ValueError, match="teacher_temperature must be positive"):
        DINOLoss(4, teacher_temperature=0.0)
    with pytest.raises(ValueError, match="center_momentum must lie in"):
        DINOLoss(4, center_momentum=1.5)
    with pytest.raises(ValueError, match="out_dim is needed"):
        DINO(student_cnn())
    wide = SSLNetwork(student_mlp(), DINOHead(64, 32))
    with pytest.raises(ValueError, match="heads of one width"):
        DINO(dino_network(student_mlp(), out_dim=16), wide, multi_crop=MLP_CROPS)(
            torch.randn(4, 1, 8, 8)
        )


def test_half_precision_is_computed_in_float32_and_float64_kept():
    torch.manual_seed(0)
    student, teacher = torch.randn(10 * 2, 8), torch.randn(2 * 2, 8)
    reference = DINOLoss(8).eval()(student, teacher)
    half = DINOLoss(8).eval()(student.bfloat16(), teacher.bfloat16())
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, reference, rtol=0.05, atol=1e-3)
    assert DINOLoss(8).double()(student.double(), teacher.double()).dtype == torch.float64
    assert math.isfinite(float(reference)) and np.isfinite(float(half))
