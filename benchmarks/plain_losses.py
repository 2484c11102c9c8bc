"""PLAIN FORMULATIONS, for timing only: each loss written directly from its paper's equation.

``benchmarks/bench_losses.py`` times every taxonomy loss against the function of the
same implementation id here. Each is the textbook expression, the way one would
type it from the paper (or as the authors' released code does it): no argument
checks, no dtype policy (no float32 upcast under autocast), probabilities formed
with ``softmax`` where the paper writes them. They are a yardstick of speed, not
references: the tested implementations are in ``reference_impls/``.

Each function takes the built loss module (for its hyperparameters and its learnable
connectors, so both sides compute the same model) and the same arguments the loss is
called with, and returns the scalar loss. A loss missing from :data:`PLAIN` has no
plain formulation here; the benchmark says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


def _kd(student: Tensor, teacher: Tensor, temperature: float | Tensor) -> Tensor:
    """Hinton et al.: tau^2 KL(softmax(t / tau) || softmax(s / tau)), batch mean."""
    p_teacher = F.softmax(teacher / temperature, dim=1)
    log_p_student = F.log_softmax(student / temperature, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature**2


def kd(loss: nn.Module, student: Tensor, teacher: Tensor) -> Tensor:
    return _kd(student, teacher, loss.temperature)


def _dkd(student: Tensor, teacher: Tensor, target: Tensor, alpha, beta, tau) -> Tensor:
    """Zhao et al. Eq. 1-3 as mdistiller writes it: masked softmax probabilities, the
    binary (target, rest) distribution, and NCKD by pushing the target logit down 1000."""
    gt = F.one_hot(target, student.shape[1]).float()
    other = 1.0 - gt
    p_student = F.softmax(student / tau, dim=1)
    p_teacher = F.softmax(teacher / tau, dim=1)
    b_student = torch.stack([(p_student * gt).sum(1), (p_student * other).sum(1)], dim=1)
    b_teacher = torch.stack([(p_teacher * gt).sum(1), (p_teacher * other).sum(1)], dim=1)
    tckd = F.kl_div(torch.log(b_student), b_teacher, reduction="sum") / student.shape[0]
    log_p_student_rest = F.log_softmax(student / tau - 1000.0 * gt, dim=1)
    p_teacher_rest = F.softmax(teacher / tau - 1000.0 * gt, dim=1)
    nckd = F.kl_div(log_p_student_rest, p_teacher_rest, reduction="sum") / student.shape[0]
    return (alpha * tckd + beta * nckd) * tau**2


def dkd(loss: nn.Module, student: Tensor, teacher: Tensor, target: Tensor) -> Tensor:
    factor = loss.warmup_factor
    return factor * _dkd(student, teacher, target, loss.alpha, loss.beta, loss.temperature)


def _z_score(logits: Tensor) -> Tensor:
    return (logits - logits.mean(1, keepdim=True)) / (logits.std(1, keepdim=True) + 1e-7)


def logit_standardization(
    loss: nn.Module, student: Tensor, teacher: Tensor, target: Tensor | None = None
) -> Tensor:
    """Sun et al.: the base loss on z-scored logits."""
    z_student, z_teacher = _z_score(student), _z_score(teacher)
    if loss.base == "kd":
        return _kd(z_student, z_teacher, loss.temperature)
    return loss.warmup_factor * _dkd(
        z_student, z_teacher, target, loss.alpha, loss.beta, loss.temperature
    )


def ttm(loss: nn.Module, student: Tensor, teacher: Tensor) -> Tensor:
    """Zheng and Yang: KL(p_t^gamma / Z || p_s), p_t^gamma normalised."""
    p_teacher = F.softmax(teacher, dim=1).pow(loss.gamma)
    normaliser = p_teacher.sum(1, keepdim=True)
    q_teacher = p_teacher / normaliser
    per_sample = (q_teacher * (q_teacher.log() - F.log_softmax(student, dim=1))).sum(1)
    if loss.weighted:
        per_sample = normaliser.squeeze(1) * per_sample
    return per_sample.mean()


def normkd(loss: nn.Module, student: Tensor, teacher: Tensor) -> Tensor:
    """Chi et al.: per-sample temperature T_norm * std(z), tau_t^2 KL."""
    t_student = loss.temperature_norm * student.std(1, keepdim=True)
    t_teacher = loss.temperature_norm * teacher.std(1, keepdim=True)
    p_teacher = F.softmax(teacher / t_teacher, dim=1)
    log_p_student = F.log_softmax(student / t_student, dim=1)
    kl = (p_teacher * (p_teacher.log() - log_p_student)).sum(1)
    return (kl * t_teacher.squeeze(1) ** 2).mean()


def ctkd(loss: nn.Module, student: Tensor, teacher: Tensor) -> Tensor:
    """Li et al.: KD at the learned global temperature (the gradient reversal is the module's)."""
    from reference_impls.algorithms.adaptive.ctkd import reverse_gradient

    temperature = loss.temperature_of(reverse_gradient(loss.temperature_parameter, loss.lambda_))
    return loss.kd_weight * _kd(student, teacher, temperature)


def _pearson_loss(a: Tensor, b: Tensor) -> Tensor:
    """1 - mean over rows of the cosine of the centred rows (Huang et al.'s inter relation)."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return 1.0 - F.cosine_similarity(a, b, dim=1, eps=1e-8).mean()


def dist(loss: nn.Module, student: Tensor, teacher: Tensor) -> Tensor:
    """Huang et al.: beta * inter + gamma * intra Pearson relation of softmax(z / tau)."""
    tau = loss.temperature
    p_student, p_teacher = F.softmax(student / tau, dim=1), F.softmax(teacher / tau, dim=1)
    inter = _pearson_loss(p_student, p_teacher)
    intra = _pearson_loss(p_student.t(), p_teacher.t())
    return tau**2 * (loss.beta * inter + loss.gamma * intra)


def fitnets(loss: nn.Module, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Romero et al.: beta * || r(guided) - hint ||^2 (mean)."""
    layer = loss.hint_layer
    return loss.beta * F.mse_loss(loss.regressor(student[layer]), teacher[layer])


def _attention(features: Tensor) -> Tensor:
    return F.normalize(features.pow(2).mean(1).view(features.shape[0], -1))


def at(loss: nn.Module, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Zagoruyko and Komodakis (their utils.at / at_loss): p = 2."""
    total = sum(
        (_attention(student[i]) - _attention(teacher[i])).pow(2).mean() for i in loss.stages
    )
    return loss.beta * total


def nst(loss: nn.Module, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Huang and Wang: squared MMD with the polynomial kernel (x.y + c)^d, per sample."""
    total = 0.0
    for i in loss.stages:
        f_s = F.normalize(student[i].flatten(2), dim=2)
        f_t = F.normalize(teacher[i].flatten(2), dim=2)

        def kernel(a: Tensor, b: Tensor) -> Tensor:
            return (a @ b.transpose(1, 2) + loss.offset).pow(loss.degree).mean((1, 2))

        total = total + (kernel(f_t, f_t) + kernel(f_s, f_s) - 2 * kernel(f_s, f_t)).mean()
    return loss.lambda_ * total


def sp(loss: nn.Module, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Tung and Mori: || norm(G_t) - norm(G_s) ||_F^2 / b^2, G = A A^T."""
    total = 0.0
    for i in loss.stages:
        a_s, a_t = student[i].flatten(1), teacher[i].flatten(1)
        g_s = F.normalize(a_s @ a_s.t())
        g_t = F.normalize(a_t @ a_t.t())
        total = total + (g_t - g_s).pow(2).sum() / a_s.shape[0] ** 2
    return loss.gamma * total


def fsp(loss: nn.Module, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Yim et al.: || G_s - G_t ||^2 per pair of stages, G = F1 F2^T / (h w)."""
    if loss.connectors is not None:
        student = [c(f) for c, f in zip(loss.connectors, student, strict=True)]

    def gram(first: Tensor, second: Tensor) -> Tensor:
        if first.shape[2:] != second.shape[2:]:
            first = F.adaptive_avg_pool2d(first, second.shape[2:])
        return first.flatten(2) @ second.flatten(2).transpose(1, 2) / second[0, 0].numel()

    total = 0.0
    for (i, j), weight in zip(loss.pairs, loss.lambdas, strict=True):
        difference = gram(student[i], student[j]) - gram(teacher[i], teacher[j])
        total = total + weight * difference.pow(2).sum((1, 2)).mean()
    return total


def ickd(loss: nn.Module, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Liu et al.: || norm(F_s F_s^T) - norm(F_t F_t^T) ||^2 / (c b)."""
    total = 0.0
    for stage, connector in zip(loss.stages, loss.connectors, strict=True):
        f_s = connector(student[stage]).flatten(2)
        f_t = teacher[stage].flatten(2)
        g_s = F.normalize(f_s @ f_s.transpose(1, 2), dim=2)
        g_t = F.normalize(f_t @ f_t.transpose(1, 2), dim=2)
        total = total + (g_s - g_t).pow(2).sum() / (f_t.shape[1] * f_t.shape[0])
    return total


def rkd(loss: nn.Module, student: Tensor, teacher: Tensor) -> Tensor:
    """Park et al. (their RkdDistance / RKdAngle): pdist / mean, and the [B, B, B] cosines."""
    if loss.normalize_embeddings:
        student, teacher = F.normalize(student, dim=1), F.normalize(teacher, dim=1)

    def pdist(e: Tensor) -> Tensor:
        squared = e.pow(2).sum(1)
        d = (squared.unsqueeze(0) + squared.unsqueeze(1) - 2 * e @ e.t()).clamp(min=1e-12).sqrt()
        d = d.clone()
        d[range(len(e)), range(len(e))] = 0
        return d / d[d > 0].mean()

    def angles(e: Tensor) -> Tensor:
        v = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
        return torch.bmm(v, v.transpose(1, 2)).view(-1)

    distance = F.smooth_l1_loss(pdist(student), pdist(teacher))
    angle = F.smooth_l1_loss(angles(student), angles(teacher))
    return loss.lambda_distance * distance + loss.lambda_angle * angle


def cc(loss: nn.Module, student: Tensor, teacher: Tensor) -> Tensor:
    """Peng et al.: Taylor-expanded RBF correlations of the connected embeddings, MSE."""

    def correlation(e: Tensor) -> Tensor:
        cosine = F.normalize(e, dim=1) @ F.normalize(e, dim=1).t()
        return sum(
            math.exp(-2 * loss.gamma) * (2 * loss.gamma) ** p / math.factorial(p) * cosine**p
            for p in range(loss.p_order + 1)
        )

    s, t = loss.student_connector(student), loss.teacher_connector(teacher)
    return (correlation(s) - correlation(t)).pow(2).mean()


def pkt(loss: nn.Module, student: Tensor, teacher: Tensor) -> Tensor:
    """Passalis and Tefas (their cosine_similarity_loss): KL of cosine-kernel neighbour laws."""
    eps = loss.eps

    def probabilities(e: Tensor) -> Tensor:
        e = e / (e.pow(2).sum(1, keepdim=True).sqrt() + eps)
        kernel = (e @ e.t() + 1.0) / 2.0
        return kernel / kernel.sum(1, keepdim=True)

    p, q = probabilities(teacher), probabilities(student)
    return (p * torch.log((p + eps) / (q + eps))).mean()


def ft(loss: nn.Module, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Kim et al. (their train_student.py and utils.FT): beta * L1(FT(F_s), FT(F_t)),
    FT(x) = normalize(x.view(B, -1)); F_s the translator's output, F_t the frozen
    paraphraser's encoding of the teacher's map (their ``nn.L1Loss``, p = 1; p = 2: MSE)."""
    factor_s = loss.translator(student[loss.stage])
    with torch.no_grad():
        factor_t = loss.paraphraser.encoder(teacher[loss.stage])
    unit_s = F.normalize(factor_s.view(factor_s.shape[0], -1))
    unit_t = F.normalize(factor_t.view(factor_t.shape[0], -1))
    distance = F.l1_loss if loss.p == 1 else F.mse_loss
    return loss.beta * distance(unit_s, unit_t)


def ab(loss: nn.Module, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Heo et al. (their criterion_alternative_L2): (s + mu)^2 where the teacher is off and
    s > -mu, (s - mu)^2 where it is on and s <= mu; summed, stage weights 2^-(n-1-i),
    scaled by beta / B."""
    margin = loss.margin
    total = 0.0
    for weight, connector, i in zip(loss.layer_weights, loss.connectors, loss.stages, strict=True):
        source, target = connector(student[i]), teacher[i]
        penalty = (source + margin) ** 2 * ((source > -margin) & (target <= 0)).float() + (
            source - margin
        ) ** 2 * ((source <= margin) & (target > 0)).float()
        total = total + weight * penalty.abs().sum()
    return loss.beta * total / student[0].shape[0]


def ofd(loss: nn.Module, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Heo et al. (their distiller.py, distillation_loss): partial L2 to max(t, margin),
    stage k of K weighted 1 / 2^(K-k-1), alpha / B."""
    count = len(loss.stages)
    total = 0.0
    for position, (stage, connector) in enumerate(zip(loss.stages, loss.connectors, strict=True)):
        source = connector(student[stage])
        target = torch.max(teacher[stage], loss.margin(position))
        squared = F.mse_loss(source, target, reduction="none")
        squared = squared * ((source > target) | (target > 0)).float()
        total = total + squared.sum() / 2 ** (count - position - 1)
    return loss.alpha * total / student[0].shape[0]


def reviewkd(loss: nn.Module, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Chen et al. (their reviewkd.py: ABF.forward, ReviewKD.forward and hcl), on the
    loss's fusion modules: student levels fused deep to shallow, HCL to the teacher's."""

    def abf(fusion: nn.Module, x: Tensor, y: Tensor | None, out_size) -> tuple[Tensor, Tensor]:
        n, _, h, w = x.shape
        x = fusion.project(x)
        if fusion.attention is not None:
            y = F.interpolate(y, (h, w), mode="nearest")
            z = fusion.attention(torch.cat([x, y], dim=1))
            x = x * z[:, 0].view(n, 1, h, w) + y * z[:, 1].view(n, 1, h, w)
        if x.shape[-2:] != out_size:
            x = F.interpolate(x, out_size, mode="nearest")
        return fusion.output(x), x

    def hcl(fstudent: list[Tensor], fteacher: list[Tensor]) -> Tensor:
        loss_all = 0.0
        for fs, ft in zip(fstudent, fteacher, strict=True):
            h = fs.shape[2]
            level_loss = F.mse_loss(fs, ft, reduction="mean")
            cnt, tot = 1.0, 1.0
            for level in (4, 2, 1):
                if level >= h:
                    continue
                cnt /= 2.0
                pooled_s = F.adaptive_avg_pool2d(fs, (level, level))
                pooled_t = F.adaptive_avg_pool2d(ft, (level, level))
                level_loss = level_loss + F.mse_loss(pooled_s, pooled_t, reduction="mean") * cnt
                tot += cnt
            loss_all = loss_all + level_loss / tot
        return loss_all

    maps = list(student) if loss.student_preact else [F.relu(f) for f in student]
    student_levels = [*maps, F.relu(student[-1]).mean((2, 3), keepdim=True)]
    teacher_levels = [*teacher, F.relu(teacher[-1]).mean((2, 3), keepdim=True)]
    results, residual = [], None
    for level in reversed(range(len(loss.fusions))):
        out_size = teacher_levels[level].shape[-2:]
        output, residual = abf(loss.fusions[level], student_levels[level], residual, out_size)
        results.insert(0, output)
    return loss.warmup_factor * hcl(results, teacher_levels)


def mgd(loss: nn.Module, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Yang et al. (their cls MGDLoss.get_dis_loss): align, mask with rand < lambda,
    generate, MSE(sum) / N, times alpha. The mask is drawn from the same random stream
    as ours (the benchmark seeds it before each call), on the features' device."""
    total = 0.0
    for position, stage in enumerate(loss.stages):
        preds_s, preds_t = loss.align[position](student[stage]), teacher[stage]
        n, c, h, w = preds_s.shape
        shape = (n, c, 1, 1) if loss.mask == "channel" else (n, 1, h, w)
        mat = torch.rand(shape, device=preds_s.device)
        mat = torch.where(mat < loss.lambda_mgd, 0, 1)
        new_fea = loss.generation[position](torch.mul(preds_s, mat))
        total = total + F.mse_loss(new_fea, preds_t, reduction="sum") / n
    return loss.alpha_mgd * total


def irg(
    loss: nn.Module,
    student: list[Tensor],
    teacher: list[Tensor],
    student_logits: Tensor | None = None,
    teacher_logits: Tensor | None = None,
) -> Tensor:
    """Liu et al. as Knowledge-Distillation-Zoo's IRG writes it (pdist by |a|^2 + |b|^2 -
    2 a.b, diagonal zeroed, divided by the max), with the max a constant in the backward
    pass as in the authors' Caffe layers (the Zoo lets it carry gradient)."""

    def edges(e: Tensor, eps: float = 1e-12) -> Tensor:
        e = e.view(e.shape[0], -1)
        square = e.pow(2).sum(dim=1)
        dist = (square.unsqueeze(0) + square.unsqueeze(1) - 2 * torch.mm(e, e.t())).clamp(min=eps)
        dist = dist.clone()
        dist[range(len(e)), range(len(e))] = 0
        return dist / dist.max().detach()

    def transformation(fm1: Tensor, fm2: Tensor, eps: float = 1e-12) -> Tensor:
        if fm1.shape[2:] != fm2.shape[2:]:
            fm1 = F.adaptive_avg_pool2d(fm1, fm2.shape[2:])
        narrow, wide = sorted((fm1.shape[1], fm2.shape[1]))
        if fm1.shape[1] == narrow and wide > narrow:  # the Zoo: (fm2[:, 0::2] + fm2[:, 1::2]) / 2
            fm2 = fm2.view(fm2.shape[0], narrow, wide // narrow, *fm2.shape[2:]).mean(2)
        dist = (fm1.flatten(1) - fm2.flatten(1)).pow(2).sum(-1).clamp(min=eps)
        return dist / dist.max().detach()

    pairs = [(student[i], teacher[i]) for i in loss.edge_stages]
    if loss.embedding_edge:
        pairs.append((student[-1].mean((2, 3)), teacher[-1].mean((2, 3))))
    edge = sum(F.mse_loss(edges(s), edges(t)) for s, t in pairs) / len(pairs)
    earlier, later = loss.transformation_stages
    transfer = F.mse_loss(
        transformation(student[earlier], student[later]),
        transformation(teacher[earlier], teacher[later]),
    )
    total = loss.lambda_edge * edge + loss.lambda_transformation * transfer
    if loss.lambda_vertex > 0:
        total = total + loss.lambda_vertex * F.mse_loss(student_logits, teacher_logits)
    return total


PlainLoss = Callable[..., Tensor]

#: implementation id (as in the taxonomy) -> its plain formulation
PLAIN: dict[str, PlainLoss] = {
    "kd": kd,
    "dkd": dkd,
    "logit-standardization": logit_standardization,
    "ttm": ttm,
    "normkd": normkd,
    "ctkd": ctkd,
    "dist": dist,
    "fitnets": fitnets,
    "at": at,
    "nst": nst,
    "sp": sp,
    "fsp": fsp,
    "ickd": ickd,
    "rkd": rkd,
    "cc": cc,
    "pkt": pkt,
    "ft": ft,
    "ab": ab,
    "ofd": ofd,
    "reviewkd": reviewkd,
    "mgd": mgd,
    "irg": irg,
}
