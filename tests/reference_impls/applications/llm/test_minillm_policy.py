"""MiniLLM's policy-gradient procedure (Gu et al., 2024): returns, clip, rollouts, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.applications.llm import MiniLLM, MiniLLMReverseKLLoss
from reference_impls.applications.llm.minillm_policy import (
    Rollout,
    clipped_policy_gradient_loss,
    normalised_returns,
    whiten,
)
from reference_impls.common.language_models import (
    VOCAB_SIZE,
    fit_language_model,
    generate,
    load_docstrings,
    student_lm,
    teacher_lm,
)


def test_the_clipped_loss_of_a_two_token_response_by_hand():
    # rewards 1, 2 with gamma 0.5: returns per remaining token (1 + 0.5 * 2) / 2 = 1 and 2 / 1 = 2
    rewards, mask = torch.tensor([[1.0, 2.0]]), torch.ones(1, 2, dtype=torch.bool)
    returns = normalised_returns(rewards, mask, gamma=0.5)
    assert torch.allclose(returns, torch.tensor([[1.0, 2.0]]))
    # whitened: mean 1.5, unbiased variance 0.5
    advantages = whiten(returns, mask)
    a = 0.5 / math.sqrt(0.5 + 1e-8)
    assert torch.allclose(advantages, torch.tensor([[-a, a]]))
    # ratio 1 (on the first pass) times the weights 1.1 and 1.5: the second is clipped to 1.2
    logprobs = torch.log(torch.tensor([[0.3, 0.6]])).requires_grad_()
    weights = torch.tensor([[1.1, 1.5]])
    loss = clipped_policy_gradient_loss(logprobs, logprobs.detach(), advantages, weights, mask)
    assert loss.item() == pytest.approx((a * 1.1 - a * 1.2) / 2, rel=1e-6)
    loss.backward()
    # the clipped token gets no gradient; the other -A * ratio / n
    assert logprobs.grad[0, 1] == 0
    assert logprobs.grad[0, 0].item() == pytest.approx(a * 1.1 / 2, rel=1e-6)


def test_the_clip_is_pessimistic_on_both_sides():
    mask = torch.ones(1, 4, dtype=torch.bool)
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    weights = torch.tensor([[0.5, 1.5, 0.5, 1.5]])  # ratios 0.5 and 1.5, on either side
    logprobs = torch.zeros(1, 4, requires_grad=True)
    loss = clipped_policy_gradient_loss(logprobs, torch.zeros(1, 4), advantages, weights, mask)
    # max(-A r, -A clip(r)): A > 0 keeps r = 0.5 (below the clip), clips 1.5 to 1.2;
    # A < 0 clips 0.5 to 0.8, keeps 1.5
    assert loss.item() == pytest.approx((-0.5 - 1.2 + 0.8 + 1.5) / 4)
    loss.backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[-0.5, 0.0, 0.0, 1.5]]) / 4)
    # a wider clip range lets every token through
    loose = clipped_policy_gradient_loss(
        logprobs, torch.zeros(1, 4), advantages, weights, mask, cliprange=10.0
    )
    assert loose.item() == pytest.approx((-0.5 - 1.5 + 0.5 + 1.5) / 4)


def test_length_normalisation_divides_by_the_tokens_left_and_the_papers_returns_start_after_t():
    rewards = torch.tensor([[1.0, 1.0, 1.0, 99.0]])
    mask = torch.tensor([[True, True, True, False]])
    assert torch.equal(normalised_returns(rewards, mask, gamma=1.0), torch.ones(1, 4) * mask)
    plain = normalised_returns(rewards, mask, gamma=1.0, length_norm=False)
    assert torch.equal(plain, torch.tensor([[3.0, 2.0, 1.0, 0.0]]))
    # the paper's R_{t+1}: the rewards after t, over the number of tokens after t
    paper = normalised_returns(rewards, mask, gamma=1.0, include_current_reward=False)
    assert torch.equal(paper, torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    discounted = normalised_returns(rewards, mask, gamma=0.5, length_norm=False)
    assert torch.equal(discounted, torch.tensor([[1.75, 1.5, 1.0, 0.0]]))


def _models(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    return student_lm(), teacher_lm()


def test_a_rollout_holds_the_rewards_and_weights_of_teacher_mixed_samples(character_batch):
    student, teacher = _models()
    procedure = MiniLLM(student, teacher, prompt_length=8, max_new_tokens=6)
    tokens, mask = character_batch(4)
    torch.manual_seed(1)
    rollout = procedure.rollout(tokens, mask)
    assert rollout.tokens.shape == (4, 14) and rollout.mask.shape == (4, 6)
    assert torch.equal(rollout.tokens[:, :8], tokens[:, :8])
    responses = rollout.tokens[:, 8:, None]
    with torch.no_grad():
        log_q = F.log_softmax(student(rollout.tokens).logits[:, 7:-1], -1).gather(-1, responses)[
            ..., 0
        ]
        log_p = F.log_softmax(teacher(rollout.tokens).logits[:, 7:-1], -1).gather(-1, responses)[
            ..., 0
        ]
    assert torch.allclose(rollout.old_logprobs, log_q, atol=1e-5)
    assert torch.allclose(rollout.rewards, (log_p - log_q) / 0.5, atol=1e-4)
    mixed = 0.8 * log_q.exp() + 0.2 * log_p.exp()
    assert torch.allclose(rollout.weights, log_q.exp() / mixed, atol=1e-5)
    # without mixing, the samples are the student's and the weights 1
    plain = MiniLLM(student, teacher, teacher_mix=0.0, prompt_length=8, max_new_tokens=6)
    assert torch.equal(plain.rollout(tokens, mask).weights, torch.ones(4, 6))


def test_with_the_papers_returns_a_one_token_response_is_the_single_step_term_alone(
    character_batch,
):
    # the paper's long-term part uses R_{t+1}, empty for the last token: with one token the
    # gradient is the single-step term's, exactly (the code's R_t includes r_t, so not there)
    student, teacher = _models()
    tokens, mask = character_batch(4)
    procedure = MiniLLM(
        student, teacher, prompt_length=8, max_new_tokens=1, pt_weight=0.0,
        include_current_reward=False,
    )  # fmt: skip
    torch.manual_seed(1)
    rollout = procedure.rollout(tokens, mask)
    terms = procedure(tokens, mask, rollout)
    assert terms["pg"] == 0
    logits = student(rollout.tokens).logits[:, 7:8]
    teacher_logits = teacher(rollout.tokens).logits[:, 7:8].detach()
    expected = MiniLLMReverseKLLoss()(logits, teacher_logits, rollout.tokens[:, 8:])
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    code = MiniLLM(student, teacher, prompt_length=8, max_new_tokens=1, pt_weight=0.0)
    assert code(tokens, mask, rollout)["pg"] != 0


def test_padding_never_counts(character_batch):
    student, teacher = _models()
    tokens, mask = character_batch(4)
    procedure = MiniLLM(student, teacher, prompt_length=8, max_new_tokens=6)
    torch.manual_seed(1)
    rollout = procedure.rollout(tokens, mask)
    kept = torch.ones(4, 6, dtype=torch.bool)
    kept[2, 3:] = False
    padded = Rollout(**{**vars(rollout), "mask": kept})
    noise = torch.randn(4, 6)
    changed = Rollout(
        tokens=torch.cat([rollout.tokens[:, :8], rollout.tokens[:, 8:].masked_fill(~kept, 5)], 1),
        mask=kept,
        old_logprobs=rollout.old_logprobs + noise * ~kept,
        rewards=rollout.rewards + 100 * noise * ~kept,
        weights=rollout.weights + noise.abs() * ~kept,
        teacher_logits=rollout.teacher_logits
        + 3 * torch.randn(4, 6, VOCAB_SIZE) * ~kept[..., None],
    )
    first, second = procedure(tokens, mask, padded), procedure(tokens, mask, changed)
    for name in ("loss", "pg", "single_step", "pt", "reward"):
        assert torch.allclose(first[name], second[name], atol=1e-6), name
    # the data's padded positions do not count in the language-modelling term
    other = tokens.masked_fill(~mask, 7)
    assert torch.allclose(
        procedure.pretraining_loss(tokens, mask), procedure.pretraining_loss(other, mask)
    )
    # nothing kept: a zero loss, no NaN
    empty = Rollout(**{**vars(rollout), "mask": torch.zeros(4, 6, dtype=torch.bool)})
    terms = procedure.policy_loss(empty)
    assert terms["pg"] == 0 and terms["single_step"] == 0


def test_the_objective_reuses_each_rollout_for_ppo_epochs_steps(monkeypatch, character_batch):
    student, teacher = _models()
    procedure = MiniLLM(student, teacher, prompt_length=8, max_new_tokens=4, ppo_epochs=3)
    sampled = []
    original = procedure.rollout
    monkeypatch.setattr(procedure, "rollout", lambda *a: sampled.append(1) or original(*a))
    objective = procedure.objective()
    tokens, mask = character_batch(4)
    for _ in range(7):
        objective(tokens, mask, torch.arange(4)).backward()
    assert len(sampled) == 3  # steps 1, 4 and 7
    assert all(p.grad is None for p in teacher.parameters())


def test_bad_inputs_and_settings_are_clear_errors(character_batch):
    student, teacher = _models()
    procedure = MiniLLM(student, teacher, prompt_length=8, max_new_tokens=4)
    tokens, mask = character_batch(4)
    with pytest.raises(ValueError, match="one shape"):
        procedure(tokens, mask[:, :5])
    short = mask.clone()
    short[0, 4:] = False
    with pytest.raises(ValueError, match="prompt_length"):
        procedure(tokens, short)
    with pytest.raises(ValueError, match=r"rewards, mask must share one shape"):
        normalised_returns(torch.zeros(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="weights"):
        clipped_policy_gradient_loss(*(torch.zeros(2, 3),) * 3, torch.zeros(3), torch.ones(2, 3))
    for name, value in [("teacher_mix", 1.5), ("cliprange", 0.0), ("gamma", -0.1),
                        ("kd_ratio", 2.0), ("ppo_epochs", 0), ("reward_scaling", 0.0)]:  # fmt: skip
        with pytest.raises(ValueError, match=name):
            MiniLLM(student, teacher, **{name: value})


def _reverse_kl_on_own_samples(student, teacher, prompts, new_tokens=16) -> float:
    torch.manual_seed(2)
    samples = generate(student, prompts, new_tokens)
    with torch.no_grad():
        log_q = F.log_softmax(student(samples).logits[:, :-1], -1)
        log_p = F.log_softmax(teacher(samples).logits[:, :-1], -1)
    kl = (log_q.exp() * (log_q - log_p)).sum(-1)
    return float(kl[:, prompts.shape[1] - 1 :].mean())


def test_training_lowers_the_reverse_kl_on_the_students_own_samples():
    # a peaked (untrained, scaled) teacher; 64 paragraphs; the reverse KL of the student's
    # own 16-character continuations, the quantity MiniLLM minimises
    torch.manual_seed(0)
    teacher = teacher_lm()
    with torch.no_grad():
        teacher.head.weight.mul_(8)
    corpus = load_docstrings().train_subset(64)
    prompts = corpus.test_tokens[:16, :16]

    def run(kind: str, steps: int = 20) -> float:
        torch.manual_seed(1)
        student = student_lm()
        if kind == "data":
            objective = None
        else:
            options = {"single_step": False, "pt_weight": 0.0} if kind == "pg" else {}
            objective = MiniLLM(student, teacher, max_new_tokens=16, **options).objective()
        fit_language_model(student, corpus, objective, steps=steps, batch_size=8, lr=1e-2)
        return _reverse_kl_on_own_samples(student, teacher, prompts)

    torch.manual_seed(1)
    untrained = _reverse_kl_on_own_samples(student_lm(), teacher, prompts)
    data, minillm = run("data"), run("minillm")
    assert minillm < 0.6 * data and minillm < 0.6 * untrained, (untrained, data, minillm)
    # the policy-gradient term alone moves the student too, though slowly
    assert run("pg", steps=40) < 0.95 * untrained
    # measured, not asserted: the token-level term alone on pure student samples (GKD with
    # the reverse KL, lmbda 1) fell further in these short runs (3.2 against 4.0 at seed 1)
