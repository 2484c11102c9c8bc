"""Ecosystem fit: the token-level losses drop into a Hugging Face ``Trainer`` unchanged.

Two tiny ``GPT2LMHeadModel``s are built from a ``GPT2Config`` (nothing downloaded); a
``Trainer`` subclass overrides ``compute_loss`` to distil the teacher into the student
with :class:`WordLevelKDLoss` on the shifted logits and Hugging Face labels (-100 at the
padding), for a few steps on the CPU; the distillation loss on a fixed batch falls.
"""

from __future__ import annotations

import os

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate>=1.1")

from reference_impls.applications.llm import GKDLoss, WordLevelKDLoss  # noqa: E402
from reference_impls.common.language_models import VOCAB_SIZE, load_docstrings  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class DistillationTrainer(transformers.Trainer):
    """``compute_loss``: our token-level loss between the student and a frozen teacher."""

    def __init__(self, *args, teacher, loss, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher, self.distillation_loss = teacher.eval(), loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        with torch.no_grad():
            teacher_logits = self.teacher(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            ).logits
        # causal shift, as TRL's GKDTrainer: logits at i predict the label at i + 1
        loss = self.distillation_loss(outputs.logits[:, :-1], teacher_logits[:, :-1], labels[:, 1:])
        return (loss, outputs) if return_outputs else loss


def _gpt2(width: int, layers: int, seed: int):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=VOCAB_SIZE, n_positions=48, n_embd=width, n_layer=layers, n_head=2
    )
    return transformers.GPT2LMHeadModel(config)


def _examples(count: int) -> list[dict[str, torch.Tensor]]:
    corpus = load_docstrings().train_subset(count)
    examples = []
    for tokens, mask in zip(corpus.train_tokens, corpus.train_mask, strict=True):
        labels = tokens.masked_fill(~mask, -100)
        examples.append({"input_ids": tokens, "attention_mask": mask.long(), "labels": labels})
    return examples


def _collate(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([example[key] for example in batch]) for key in batch[0]}


@pytest.mark.parametrize("loss", [WordLevelKDLoss(), GKDLoss(beta=0.5)], ids=["word-kd", "gkd"])
def test_our_loss_inside_a_trainer_compute_loss_distils_a_gpt2(tmp_path, loss):
    teacher, student = _gpt2(64, 2, seed=0), _gpt2(32, 1, seed=1)
    with torch.no_grad():
        teacher.lm_head.weight.mul_(4)  # tied to the embeddings: a peaked teacher
    examples = _examples(64)
    batch = _collate(examples[:16])

    def distillation_loss() -> float:
        with torch.no_grad():
            student.eval()
            student_logits = student(input_ids=batch["input_ids"]).logits
            teacher_logits = teacher(input_ids=batch["input_ids"]).logits
        labels = batch["labels"][:, 1:]
        return float(loss(student_logits[:, :-1], teacher_logits[:, :-1], labels))

    before = distillation_loss()
    arguments = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=20,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=5,
        remove_unused_columns=False,
        seed=0,
        disable_tqdm=True,
    )
    trainer = DistillationTrainer(
        model=student,
        args=arguments,
        train_dataset=examples,
        data_collator=_collate,
        teacher=teacher,
        loss=loss,
    )
    trainer.train()
    after = distillation_loss()
    assert after < 0.85 * before, (before, after)
    assert all(p.grad is None for p in teacher.parameters())
