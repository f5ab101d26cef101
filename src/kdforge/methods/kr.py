"""`kr`, `kr_kd`: knowledge representing (Liu et al., CVPR-W 2019) — kdforge's reconstruction.

The paper's body and code are not public; what is confirmed is that the teacher's *parameter distribution*
is the prior knowledge, that a knowledge-aggregation scheme lifts it to a more abstract level (avoiding
residual accumulation in deeper layers), and that a sparse recoding penalty penalises the student's
gradients. kdforge computes exactly this (docs/methods/kr.md):

* Stage-wise aggregation, form `filters` (default): for every conv of a student block in stage s, the
  teacher convs at the same position (`conv1`, `conv2`, ...) in all blocks of teacher stage s are reduced to
  the student conv's shape by averaging contiguous groups of output and input channels, then averaged over
  the blocks: one prior tensor per student conv. Kernel sizes and groups must match, else that conv is
  skipped; if no conv can be matched (or the stage counts differ) the method falls back to `stats`.
* Form `stats` (any architectures): per stage, `quantiles` sorted quantiles of the RMS-normalised weights;
  the student's (differentiable through the sort) are matched to the teacher's (1-D Wasserstein-2).
* Sparse recoding: the prior term's gradient is kept on the top-rho fraction of entries of every tensor
  and zeroed elsewhere (custom autograd function), so the prior never touches the other entries. For
  `filters` the entries are ranked by their deviation |W - A| (the L1 term's gradient magnitudes all tie),
  for `stats` by the magnitude of the prior gradient itself. rho = 1 gives the dense penalty.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods.base import Method
from kdforge.methods.features import pair_stages
from kdforge.methods.kd import kd_term
from kdforge.models import model_info

log = logging.getLogger(__name__)
PRIOR_LAYERS = (nn.Conv2d, nn.Linear)


class SparseRecode(torch.autograd.Function):
    """Identity forward; backward keeps the gradient on the k entries with the largest score."""

    @staticmethod
    def forward(ctx, x, k: int, score):
        ctx.k = k
        ctx.save_for_backward(score if score is not None else x.new_empty(0))
        ctx.rank_by_grad = score is None
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        (score,) = ctx.saved_tensors
        rank = grad.abs() if ctx.rank_by_grad else score
        if ctx.k >= grad.numel():
            return grad, None, None
        keep = rank.flatten().topk(ctx.k).indices
        mask = torch.zeros(grad.numel(), dtype=torch.bool, device=grad.device)
        mask[keep] = True
        return grad * mask.view_as(grad), None, None


def kept_entries(numel: int, rho: float) -> int:
    return max(1, math.ceil(rho * numel))


def sparse_recode(x: torch.Tensor, rho: float, score: torch.Tensor | None = None) -> torch.Tensor:
    return SparseRecode.apply(x, kept_entries(x.numel(), rho), score)


# --- stage structure ----------------------------------------------------------------------------------

def stage_blocks(model: nn.Module, path: str) -> list[nn.Module]:
    """The blocks of a stage: the children of a Sequential (or of the one Sequential it wraps)."""
    stage = model.get_submodule(path)
    if not isinstance(stage, nn.Sequential):
        inner = [m for m in stage.children() if isinstance(m, nn.Sequential)]
        stage = inner[0] if len(inner) == 1 else stage
    blocks = list(stage.children())
    return blocks if blocks else [stage]


def block_convs(block: nn.Module) -> dict[str, nn.Conv2d]:
    convs = {name: m for name, m in block.named_modules() if isinstance(m, nn.Conv2d)}
    return convs or ({"": block} if isinstance(block, nn.Conv2d) else {})


def reduce_to_shape(weight: torch.Tensor, out_ch: int, in_ch: int) -> torch.Tensor:
    """Average contiguous groups of output and input channels of a conv weight (O, I, kh, kw)."""
    o, i, kh, kw = weight.shape
    grid = weight.permute(2, 3, 0, 1).reshape(1, kh * kw, o, i)
    pooled = F.adaptive_avg_pool2d(grid, (out_ch, in_ch))
    return pooled.reshape(kh, kw, out_ch, in_ch).permute(2, 3, 0, 1).contiguous()


def filter_priors(student: nn.Module, teacher: nn.Module) -> list[tuple[nn.Conv2d, torch.Tensor]]:
    """(student conv, prior tensor) pairs of the `filters` aggregation; empty when the structures differ."""
    s_stages, t_stages = model_info(student).stages, model_info(teacher).stages
    if len(s_stages) != len(t_stages) or not s_stages:
        return []
    priors = []
    for s_path, t_path in zip(s_stages, t_stages):
        teacher_positions: dict[str, list[nn.Conv2d]] = {}
        for block in stage_blocks(teacher, t_path):
            for name, conv in block_convs(block).items():
                teacher_positions.setdefault(name, []).append(conv)
        for block in stage_blocks(student, s_path):
            for name, conv in block_convs(block).items():
                candidates = [t for t in teacher_positions.get(name, [])
                              if t.kernel_size == conv.kernel_size and t.groups == conv.groups == 1]
                if not candidates:
                    continue
                o, i = conv.weight.shape[:2]
                reduced = [reduce_to_shape(t.weight.detach().float(), o, i) for t in candidates]
                priors.append((conv, torch.stack(reduced).mean(0)))
    return priors


def stage_weights(model: nn.Module, path: str) -> list[torch.Tensor]:
    return [m.weight for m in model.get_submodule(path).modules() if isinstance(m, PRIOR_LAYERS)]


def normalised_quantiles(weights: list[torch.Tensor], count: int) -> torch.Tensor:
    """Sorted values of the RMS-normalised weights of a stage, read at `count` evenly spaced quantiles."""
    flat = torch.cat([(w / w.pow(2).mean().sqrt().clamp_min(1e-12)).flatten() for w in weights])
    ordered = flat.sort().values
    position = torch.linspace(0, flat.numel() - 1, count, device=flat.device)
    low, high = position.floor().long(), position.ceil().long()
    frac = position - low
    return ordered[low] * (1 - frac) + ordered[high] * frac


@dataclass
class KRConfig:
    form: str = "filters"  # filters | stats
    # lambda_KR: chosen on validation in the paper regime, where students train to convergence (results/sweeps/
    # paper-kr-weight.md); on a short budget the prior only costs accuracy (results/sweeps/fmnist-kr-defaults.md)
    kr_weight: float = 1.0
    rho: float = 0.1  # fraction of entries per tensor that receive the prior's gradient
    quantiles: int = 64  # stats form
    ce_weight: float = 1.0
    kd_weight: float = 0.0  # kr_kd: > 0
    temperature: float = 4.0

    def __post_init__(self):
        if self.form not in ("filters", "stats"):
            raise ConfigError(f"method_args.form must be filters or stats, got {self.form!r}")
        if not 0 < self.rho <= 1:
            raise ConfigError(f"method_args.rho must be in (0, 1], got {self.rho}")
        if self.kr_weight < 0 or self.quantiles < 2 or self.temperature <= 0:
            raise ConfigError("method_args: kr_weight >= 0, quantiles >= 2, temperature > 0")


class KnowledgeRepresenting(Method):
    Config = KRConfig
    needs_teacher = True
    description = "[reconstruction] teacher parameter prior per stage + sparse recoding penalty"

    def __init__(self, cfg: KRConfig, ctx):
        super().__init__(cfg, ctx)
        self.form = cfg.form
        self._convs: list[nn.Conv2d] = []
        if self.form == "filters":
            priors = filter_priors(ctx.student, ctx.teacher)
            if priors:
                self._convs = [conv for conv, _ in priors]
                for n, (_, prior) in enumerate(priors):
                    self.register_buffer(f"prior{n}", prior)
            else:
                log.warning("kr: teacher and student stages cannot be matched conv by conv; using form=stats")
                self.form = "stats"
        if self.form == "stats":
            s_stages, t_stages = model_info(ctx.student).stages, model_info(ctx.teacher).stages
            self._stage_params = []
            for n, (i, j) in enumerate(pair_stages(len(s_stages), len(t_stages))):
                with torch.no_grad():
                    target = normalised_quantiles([w.detach().float() for w in stage_weights(ctx.teacher, t_stages[j])],
                                                  cfg.quantiles)
                self.register_buffer(f"target{n}", target)
                self._stage_params.append(stage_weights(ctx.student, s_stages[i]))

    def prior_term(self) -> torch.Tensor:
        rho = self.cfg.rho
        if self.form == "filters":
            total = 0.0
            for n, conv in enumerate(self._convs):
                delta = conv.weight.float() - getattr(self, f"prior{n}")
                recoded = sparse_recode(delta, rho, delta.detach().abs())
                total = total + recoded.abs().mean()
            return total
        total = 0.0
        for n, weights in enumerate(self._stage_params):
            recoded = [sparse_recode(w.float(), rho) for w in weights]
            q = normalised_quantiles(recoded, self.cfg.quantiles)
            total = total + (q - getattr(self, f"target{n}")).pow(2).mean()
        return total

    def forward(self, batch, student, teacher, state):
        c = self.cfg
        terms = {"ce": c.ce_weight * self.cross_entropy(student.logits, batch.target),
                 "kr": c.kr_weight * self.prior_term()}
        if c.kd_weight > 0:
            terms["kd"] = kd_term(c.kd_weight, student.logits, teacher.logits, c.temperature)
        return terms


@dataclass
class KRKDConfig(KRConfig):
    ce_weight: float = 0.1
    kd_weight: float = 0.9


class KnowledgeRepresentingKD(KnowledgeRepresenting):
    Config = KRKDConfig
    description = "[reconstruction] KR prior + Hinton KD"
