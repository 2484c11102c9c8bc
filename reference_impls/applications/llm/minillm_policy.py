r"""MiniLLM's procedure: the sequence-level reverse KL minimised by policy gradient.

Citation: ``gu2024minillm`` (Gu, Dong, Wei and Huang, ICLR 2024), Section 2.2. The
student $q_\theta$ minimises $\mathrm{KL}(q_\theta\|p) = -\mathbb{E}_{y\sim q_\theta}
\sum_t r_t$ with the per-token reward $r_t = \log p(y_t|y_{<t},x) - \log q_\theta(y_t|y_{<t},x)$
(teacher minus student log-probability of the generated token). Responses are drawn from
the teacher-mixed distribution $\tilde p = \alpha\,p + (1-\alpha)\,q_\theta$ (per token,
$\alpha = 0.2$) and reweighted by the per-token importance weight
$w_t = q_\theta(y_t|\cdot)/\tilde p(y_t|\cdot)$; the gradient is split into a single-step
part, the exact token-level reverse KL of each next-token distribution
(:class:`~reference_impls.applications.llm.minillm.MiniLLMReverseKLLoss`), and a long-term
part estimated by policy gradient with length-normalised returns and PPO's clip. As
the authors' code computes it (response tokens $t \in \mathcal{K}$, $n = |\mathcal{K}|$):

$$
\begin{aligned}
R_t &= \frac{1}{|\{t' \ge t\}\cap\mathcal{K}|}\sum_{t' \ge t} \gamma^{t'-t}\,
       \operatorname{clip}\!\Big(\tfrac{r_{t'}}{s}, -c_r, c_r\Big),
\qquad A_t = \frac{R_t - \operatorname{mean}(R)}{\sqrt{\operatorname{var}(R) + 10^{-8}}}, \\
\rho_t &= \frac{q_\theta(y_t|\cdot)}{q_{\theta_\text{old}}(y_t|\cdot)}\,w_t, \qquad
\mathcal{L}_\text{PG} = \frac{1}{n}\sum_{t\in\mathcal{K}}
  \max\!\big(-A_t\,\rho_t,\; -A_t \operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\big), \\
\mathcal{L} &= \mathcal{L}_\text{PG}
  + \underbrace{\frac{1}{n}\sum_{t\in\mathcal{K}} \mathrm{KL}\big(q_\theta(\cdot|y_{<t},x)\,\|\,p(\cdot|y_{<t},x)\big)}_{\text{single step}}
  + \lambda_\text{pt}\Big[(1-k)\,\mathcal{L}_\text{LM} + k\,\mathcal{L}_\text{soft CE}\Big],
\end{aligned}
$$

the last term on language-modelling data: next-token cross-entropy and the soft
cross-entropy $-\sum_v p_v \log q_v$ to the teacher, mixed with ``kd_ratio`` $k$.

Authors' code: https://github.com/microsoft/LMOps, ``minillm/`` (commit
4f2a9deb5f08e459fd44c2e4792344d78ca89fc3). ``minillm/sampler.py``
``PPOSampler.run_sample`` (teacher-mixed sampling through their ``transformers`` fork's
``generate(mix_in_model, mix_in_alpha)``, which mixes the two softmaxes; ``w = exp(logprobs
- log((1-α) q + α p))``; rewards ``t_rewards + ent_rewards`` = $\log p - \log q$, divided
by ``reward_scaling`` and clipped to ``±cliprange_reward``), ``minillm/reward.py``
``Reward.reward_fn`` (the teacher's log-probability of the token), ``minillm/losses.py``
``Loss._get_advantages_and_returns`` (discounted returns over the tokens from $t$ on,
divided by their count, then ``whiten``), ``Loss._pg_loss`` (the clipped objective with the
weight inside the ratio), ``Loss._reg_loss`` (the single-step term), ``Loss.ppo_loss``
(their sum under ``--single-step-reg``), ``Loss.pt_loss`` (the language-modelling term) and
``minillm/trainer.py`` ``PPOTrainer.train`` (``loss = rl_loss + lm_coef * pt_loss``; each
rollout reused for ``ppo_epochs`` passes, with the old log-probabilities of sampling time).
Defaults from ``scripts/gpt2/minillm/train_base_xl.sh`` and ``arguments.py``:
``--teacher-mixed-alpha 0.2``, ``--gamma 0.95`` (default), ``--cliprange 0.2`` (default),
``--reward-scaling 0.5``, ``--cliprange-reward 100``, ``--single-step-reg``,
``--length-norm``, ``--lm-coef 1`` (default), ``--kd-ratio 0.5``, ``--ppo-epochs 4``,
``--temperature 1.0``, sampling with ``top_k 0``, ``top_p 1.0``.

Where the code differs from the paper (we follow the code): (1) the return at $t$
includes the current reward $r_t$ and is discounted by $\gamma = 0.95$; the paper's
long-term term uses the undiscounted $R_{t+1} = \sum_{t'>t} r_{t'}$, since $r_t$ belongs
to the single-step term (``include_current_reward=False`` gives the paper's, normalised by
the count of later tokens); (2) the length normalisation divides by the number of tokens
from $t$ to the end and is always on (their ``--length-norm`` only changes logged
statistics; ``length_norm=False`` here is the paper's ablation); (3) advantages are
whitened, rewards scaled by $1/0.5$ and clipped to $\pm 100$; (4) the single-step term is
not importance-weighted (the paper weights it by $w_t$); (5) the weight multiplies the
ratio inside the clip, $\operatorname{clip}(\rho w)$, so tokens whose weight leaves
$[0.8, 1.2]$ are clipped even on the first pass; (6) the language-modelling term mixes
the cross-entropy with the teacher's soft targets (``kd_ratio`` 0.5; the paper's
$\mathcal{L}_\text{PT}$ is the cross-entropy alone).

Deviations from their code: (1) our data are sequences without a prompt/response split:
the first ``prompt_length`` tokens are the prompt and ``max_new_tokens`` are sampled after
it, all kept (no end-of-sequence token; their mask keeps the position that predicts the
first pad, which is GPT-2's end of sequence); the language-modelling term is computed on
the same batch's data (theirs: a separate pre-training corpus, OpenWebText); (2) sampling
from the full vocabulary with ``torch.multinomial`` on the global generator; (3) the
whitening statistics are taken over the kept tokens (theirs: over every entry of the
mini-batch, padded zeros included), with the unbiased variance as ``torch.var_mean``,
and a single kept token gives advantage 0 (theirs: NaN); (4) no kept token gives a zero
loss (theirs: NaN); (5) a rollout is one batch, reused for ``ppo_epochs`` consecutive
steps by :meth:`MiniLLM.objective` (theirs: 256 rollouts in a store, shuffled mini-batches
of 16 for 4 epochs); (6) half precision is computed in float32, float64 kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.applications.llm.minillm import MiniLLMReverseKLLoss
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.language_models import next_token_loss, shifted
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import at_least, in_unit_interval, non_negative, positive


def _same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
    first = next(iter(shapes.values()))
    if len(first) != 2 or any(shape != first for shape in shapes.values()):
        raise ValueError(f"{', '.join(shapes)} must share one shape [B, N], got {shapes}")


def normalised_returns(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 0.95,
    *,
    include_current_reward: bool = True,
    length_norm: bool = True,
) -> torch.Tensor:
    r"""Discounted returns $\sum_{t'\ge t}\gamma^{t'-t} r_{t'}$ ``[B, N]``, per remaining token.

    Their ``_get_advantages_and_returns`` before whitening: with ``length_norm`` the
    return at $t$ is divided by the number of kept tokens from $t$ on (at least 1).
    ``include_current_reward=False`` is the paper's $R_{t+1}$: the sum starts at $t+1$
    and is divided by the number of kept tokens after $t$. Padded positions are 0.
    """
    _same_shape(rewards=rewards, mask=mask)
    kept = mask.bool()
    rewards = at_least_float32(rewards).masked_fill(~kept, 0.0)
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        if include_current_reward:
            running = rewards[:, t] + gamma * running
            returns[:, t] = running
        else:
            returns[:, t] = running
            running = rewards[:, t] + gamma * running
    if length_norm:
        remaining = kept.to(rewards.dtype).flip(1).cumsum(1).flip(1)
        if not include_current_reward:
            remaining = remaining - kept.to(rewards.dtype)
        returns = returns / remaining.clamp_min(1.0)
    return returns.masked_fill(~kept, 0.0)


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(values - mean) / sqrt(var + eps)`` over the kept entries (unbiased variance); 0 elsewhere."""
    _same_shape(values=values, mask=mask)
    kept = mask.bool()
    count = int(kept.sum())
    if count < 2:
        return torch.zeros_like(values)
    mean = values[kept].mean()
    variance = ((values[kept] - mean) ** 2).sum() / (count - 1)
    return ((values - mean) * torch.rsqrt(variance + eps)).masked_fill(~kept, 0.0)


def clipped_policy_gradient_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float = 0.2,
) -> torch.Tensor:
    r"""PPO's clipped objective with the importance weight inside the ratio, per kept token.

    $\rho_t = \exp(\log q_t - \log q^\text{old}_t)\,w_t$;
    $\frac{1}{n}\sum_t \max(-A_t\rho_t, -A_t\,\mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon))$
    (their ``Loss._pg_loss``); ``advantages``, ``old_logprobs`` and ``weights`` are constants.
    """
    _same_shape(
        logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages, weights=weights,
        mask=mask,
    )  # fmt: skip
    kept = mask.bool()
    logprobs = at_least_float32(logprobs)
    log_ratio = (logprobs - old_logprobs.detach()).masked_fill(~kept, 0.0)
    ratio = log_ratio.exp() * weights.detach()
    advantages = advantages.detach()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    per_token = torch.maximum(unclipped, clipped).masked_fill(~kept, 0.0)
    return per_token.sum() / max(int(kept.sum()), 1)


@dataclass(frozen=True)
class Rollout:
    """One batch of teacher-mixed samples and what was measured at sampling time.

    ``tokens`` ``[B, P + N]``: prompts and responses; the other fields are ``[B, N]`` over
    the response tokens (``teacher_logits`` ``[B, N, V]``): ``mask`` (True: kept),
    ``old_logprobs`` (the student's $\\log q$ of each token when sampled), ``rewards``
    (scaled and clipped $\\log p - \\log q$), ``weights`` ($q/\\tilde p$).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    old_logprobs: torch.Tensor
    rewards: torch.Tensor
    weights: torch.Tensor
    teacher_logits: torch.Tensor

    @property
    def prompt_length(self) -> int:
        return self.tokens.shape[1] - self.mask.shape[1]


class MiniLLM(DistillationProcedure):
    """MiniLLM: policy gradient on the sequence-level reverse KL, with its single-step term.

    ``forward(tokens, mask)`` takes right-padded sequences ``[B, T]`` (the first
    ``prompt_length`` tokens of every row real), samples a :class:`Rollout` from the
    teacher-mixed distribution (or takes ``rollout``), and returns ``{"loss", "pg",
    "single_step", "pt", "reward"}`` (``reward``: the mean unscaled $\\log p - \\log q$
    per sampled token, the negative of the reverse-KL estimate).

    Args:
        student, teacher: causal LMs returning ``.logits`` ``[B, T, V]`` over one vocabulary.
        teacher_mix: $\\alpha$ of teacher-mixed sampling (their ``teacher_mixed_alpha`` 0.2;
            0: sampling from the student, weights 1).
        gamma: the discount of the returns (0.95).
        cliprange: PPO's $\\epsilon$ (0.2).
        reward_scaling: rewards are divided by it (0.5).
        reward_clip: rewards are clipped to $\\pm$ it after scaling (100).
        single_step: add the single-step term (their ``--single-step-reg``: on).
        pt_weight: the weight of the language-modelling term (their ``lm_coef``: 1; 0: off).
        kd_ratio: the soft cross-entropy's share of the language-modelling term (0.5).
        ppo_epochs: passes over each rollout in :meth:`objective` (4).
        prompt_length: tokens of each sequence taken as the prompt.
        max_new_tokens: tokens sampled after the prompt.
        temperature: divides the student's logits, in sampling and in the losses (1).
        length_norm: divide the returns by the remaining length (their code: always).
        include_current_reward: the return at $t$ includes $r_t$ (their code) or starts at
            $t + 1$ (the paper's $R_{t+1}$).
        whiten_advantages: whiten the returns into advantages (their code: yes).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_mix: float = 0.2,
        gamma: float = 0.95,
        cliprange: float = 0.2,
        reward_scaling: float = 0.5,
        reward_clip: float = 100.0,
        single_step: bool = True,
        pt_weight: float = 1.0,
        kd_ratio: float = 0.5,
        ppo_epochs: int = 4,
        prompt_length: int = 16,
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        length_norm: bool = True,
        include_current_reward: bool = True,
        whiten_advantages: bool = True,
    ) -> None:
        super().__init__()
        self.student, self.teacher = student, teacher.eval()
        self.teacher.requires_grad_(False)
        self.teacher_mix = in_unit_interval("teacher_mix", teacher_mix)
        self.gamma = in_unit_interval("gamma", gamma)
        self.cliprange = positive("cliprange", cliprange)
        self.reward_scaling = positive("reward_scaling", reward_scaling)
        self.reward_clip = positive("reward_clip", reward_clip)
        self.single_step = bool(single_step)
        self.pt_weight = non_negative("pt_weight", pt_weight)
        self.kd_ratio = in_unit_interval("kd_ratio", kd_ratio)
        self.ppo_epochs = at_least("ppo_epochs", ppo_epochs, 1)
        self.prompt_length = at_least("prompt_length", prompt_length, 1)
        self.max_new_tokens = at_least("max_new_tokens", max_new_tokens, 1)
        self.temperature = positive("temperature", temperature)
        self.length_norm = bool(length_norm)
        self.include_current_reward = bool(include_current_reward)
        self.whiten_advantages = bool(whiten_advantages)
        self.single_step_loss = MiniLLMReverseKLLoss(temperature=1.0)

    # ------------------------------------------------------------------ sampling

    def _check_batch(self, tokens: torch.Tensor, mask: torch.Tensor) -> None:
        if tokens.dim() != 2 or tokens.shape != mask.shape:
            raise ValueError(
                f"tokens and mask must have one shape [B, T], got {tuple(tokens.shape)} and "
                f"{tuple(mask.shape)}"
            )
        if tokens.shape[1] < self.prompt_length or not bool(mask[:, : self.prompt_length].all()):
            raise ValueError(
                f"the first prompt_length = {self.prompt_length} tokens of every sequence must "
                f"be real (the prompt); got shape {tuple(tokens.shape)}"
            )

    def _student_log_probs(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(at_least_float32(self.student(tokens).logits) / self.temperature, -1)

    @torch.no_grad()
    def rollout(self, tokens: torch.Tensor, mask: torch.Tensor) -> Rollout:
        """Responses to the prompts of ``tokens`` from $(1-\\alpha) q + \\alpha p$, scored."""
        self._check_batch(tokens, mask)
        was_training = self.student.training
        self.student.eval()
        sequences = tokens[:, : self.prompt_length]
        for _ in range(self.max_new_tokens):
            q = self._student_log_probs(sequences)[:, -1].exp()
            if self.teacher_mix > 0:
                p = F.softmax(at_least_float32(self.teacher(sequences).logits[:, -1]), -1)
                q = (1 - self.teacher_mix) * q + self.teacher_mix * p
            chosen = torch.multinomial(q.float().cpu(), 1).to(sequences.device)
            sequences = torch.cat([sequences, chosen], dim=1)
        window = slice(
            self.prompt_length - 1, sequences.shape[1] - 1
        )  # predicts each response token
        responses = sequences[:, self.prompt_length :].unsqueeze(-1)
        student_logprobs = self._student_log_probs(sequences)[:, window].gather(-1, responses)
        teacher_logits = self.teacher(sequences).logits[:, window]
        teacher_logprobs = F.log_softmax(at_least_float32(teacher_logits), -1).gather(-1, responses)
        student_logprobs, teacher_logprobs = student_logprobs[..., 0], teacher_logprobs[..., 0]
        if self.teacher_mix > 0:
            mixed = torch.logaddexp(
                student_logprobs + math.log1p(-self.teacher_mix) if self.teacher_mix < 1 else
                torch.full_like(student_logprobs, -math.inf),
                teacher_logprobs + math.log(self.teacher_mix),
            )  # fmt: skip
            weights = (student_logprobs - mixed).exp()
        else:
            weights = torch.ones_like(student_logprobs)
        rewards = ((teacher_logprobs - student_logprobs) / self.reward_scaling).clamp(
            -self.reward_clip, self.reward_clip
        )
        self.student.train(was_training)
        return Rollout(
            tokens=sequences,
            mask=torch.ones_like(student_logprobs, dtype=torch.bool),
            old_logprobs=student_logprobs,
            rewards=rewards,
            weights=weights,
            teacher_logits=teacher_logits,
        )

    # ------------------------------------------------------------------ losses

    def advantages(self, rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Length-normalised discounted returns, whitened over the kept tokens (constants)."""
        returns = normalised_returns(
            rewards,
            mask,
            self.gamma,
            include_current_reward=self.include_current_reward,
            length_norm=self.length_norm,
        )
        return (whiten(returns, mask) if self.whiten_advantages else returns).detach()

    def policy_loss(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """The clipped policy-gradient term and the single-step term on ``rollout``."""
        prompt = rollout.prompt_length
        if prompt < 1:
            raise ValueError(
                f"rollout.tokens {tuple(rollout.tokens.shape)} must hold a prompt before the "
                f"{rollout.mask.shape[1]} response tokens of rollout.mask"
            )
        logits = self.student(rollout.tokens).logits[:, prompt - 1 : -1] / self.temperature
        responses = rollout.tokens[:, prompt:]
        logprobs = F.log_softmax(at_least_float32(logits), -1).gather(-1, responses[..., None])
        mask = rollout.mask.bool()
        pg = clipped_policy_gradient_loss(
            logprobs[..., 0],
            rollout.old_logprobs,
            self.advantages(rollout.rewards, mask),
            rollout.weights,
            mask,
            self.cliprange,
        )
        labels = responses.masked_fill(~mask, -100)
        single_step = self.single_step_loss(
            logits, rollout.teacher_logits / self.temperature, labels
        )
        return {"pg": pg, "single_step": single_step}

    def pretraining_loss(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """$(1-k)$ next-token cross-entropy $+ k$ soft cross-entropy to the teacher, on the data."""
        student_logits = self.student(tokens).logits
        language_modelling = next_token_loss(student_logits, tokens, mask)
        if self.kd_ratio == 0:
            return language_modelling
        with torch.no_grad():
            teacher_logits = self.teacher(tokens).logits
        predicted, labels = shifted(student_logits, tokens, mask)
        kept = labels != -100
        teacher_probs = F.softmax(at_least_float32(teacher_logits[:, :-1]), -1)
        soft = -(teacher_probs * F.log_softmax(at_least_float32(predicted), -1)).sum(-1)
        soft = soft.masked_fill(~kept, 0.0).sum() / max(int(kept.sum()), 1)
        return (1 - self.kd_ratio) * language_modelling + self.kd_ratio * soft

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, rollout: Rollout | None = None
    ) -> dict[str, torch.Tensor]:
        self._check_batch(tokens, mask)
        rollout = rollout if rollout is not None else self.rollout(tokens, mask)
        terms = self.policy_loss(rollout)
        loss = terms["pg"] + (terms["single_step"] if self.single_step else 0.0)
        pt = self.pretraining_loss(tokens, mask) if self.pt_weight else loss.new_zeros(())
        loss = loss + self.pt_weight * pt
        kept = rollout.mask.bool()
        reward = (rollout.rewards * self.reward_scaling).masked_fill(~kept, 0.0).sum()
        return {
            "loss": loss,
            "pg": terms["pg"].detach(),
            "single_step": terms["single_step"].detach(),
            "pt": pt.detach(),
            "reward": reward / max(int(kept.sum()), 1),
        }

    def objective(self) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """A ``loss_of_batch(tokens, mask, rows)`` for ``fit_language_model``.

        A rollout is sampled from the first batch's prompts and reused for ``ppo_epochs``
        steps (their trainer's passes over its store, the old log-probabilities fixed at
        sampling time); the language-modelling term is computed on each step's batch.
        """
        state: dict[str, object] = {"rollout": None, "uses": 0}

        def loss_of_batch(
            tokens: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor
        ) -> torch.Tensor:
            if state["rollout"] is None or state["uses"] == self.ppo_epochs:
                state["rollout"], state["uses"] = self.rollout(tokens, mask), 0
            state["uses"] = int(state["uses"]) + 1  # type: ignore[call-overload]
            return self(tokens, mask, state["rollout"])["loss"]  # type: ignore[arg-type]

        return loss_of_batch


__all__ = ["MiniLLM", "Rollout", "clipped_policy_gradient_loss", "normalised_returns", "whiten"]
