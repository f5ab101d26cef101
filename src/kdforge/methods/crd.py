"""`crd`: contrastive representation distillation (Tian et al., ICLR 2020).

Student and teacher embeddings go through linear heads to 128-d unit vectors. Each is contrasted with
K negatives drawn from a memory of the *other* model's past vectors: the momentum bank of the paper
(one entry per dataset index, NCE loss with a fixed normaliser) or, with `bank=queue`, a fixed-size
FIFO of recent vectors with an InfoNCE loss, so memory does not grow with the dataset. Dataset indices
come from the data layer (`batch.index`); bank negatives are drawn from the other classes' indices (the
official CIFAR-100 setting; `sampling=uniform` draws any index), with torch on the training device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdforge.collective import all_reduce_, gather_batch
from kdforge.errors import ConfigError
from kdforge.memory import FeatureQueue, MomentumBank, OtherClassSampler
from kdforge.methods.base import Method
from kdforge.methods.kd import kd_term
from kdforge.models import embedding_dim


def log_mean(x: torch.Tensor) -> torch.Tensor:
    """log(mean(exp(x))) without overflow."""
    return torch.logsumexp(x.flatten().float(), 0) - math.log(x.numel())


def nce_loss(logits: torch.Tensor, log_normalizer: torch.Tensor, dataset_size: int) -> torch.Tensor:
    """CRD's NCE loss over (B, 1+K) contrast logits (dot products / T), positive in column 0.

    With P(x) = exp(logit) / Z and uniform noise P_n = 1/N drawn K times, the loss is
    -(sum log P_pos/(P_pos + K/N) + sum log (K/N)/(P_neg + K/N)) / B. Both logs are softplus terms of
    u = logit - log Z - log(K/N), so the whole loss is one fused pass over the logits, stable for any Z.
    """
    k = logits.shape[1] - 1
    u = logits.float() - log_normalizer - math.log(k / dataset_size)
    return (F.softplus(-u[:, 0]).sum() + F.softplus(u[:, 1:]).sum()) / logits.shape[0]


@dataclass
class CRDConfig:
    ce_weight: float = 1.0
    crd_weight: float = 0.8
    kd_weight: float = 0.0  # CRD+KD when > 0
    kd_temperature: float = 4.0
    feat_dim: int = 128
    negatives: int = 16384
    nce_temperature: float = 0.07
    momentum: float = 0.5
    bank: str = "memory"  # memory (per-index momentum bank, NCE) | queue (fixed-size FIFO, InfoNCE)
    # memory bank negatives: "exact" draws them from other classes only (RepDistiller's CIFAR-100 setting,
    # CIFAR100InstanceSample mode='exact'); "uniform" from any index, classmates included
    sampling: str = "exact"

    def __post_init__(self):
        if self.bank not in ("memory", "queue"):
            raise ConfigError(f"method_args.bank must be memory or queue, got {self.bank!r}")
        if self.sampling not in ("exact", "uniform"):
            raise ConfigError(f"method_args.sampling must be exact or uniform, got {self.sampling!r}")
        if self.negatives < 1 or self.feat_dim < 1 or self.nce_temperature <= 0 or not 0 <= self.momentum < 1:
            raise ConfigError("method_args: negatives and feat_dim >= 1, nce_temperature > 0, momentum in [0, 1)")


class Embed(nn.Sequential):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__(nn.Linear(dim_in, dim_out))

    def forward(self, x):
        return F.normalize(super().forward(x.flatten(1).float()), dim=1)


class CRD(Method):
    Config = CRDConfig
    needs_teacher = True
    needs_indices = True
    student_taps = ("embedding",)
    teacher_taps = ("embedding",)
    description = "contrastive representation distillation (NCE, memory bank or queue)"

    def __init__(self, cfg: CRDConfig, ctx):
        super().__init__(cfg, ctx)
        self.embed_s = Embed(embedding_dim(ctx.student), cfg.feat_dim)
        self.embed_t = Embed(embedding_dim(ctx.teacher), cfg.feat_dim)
        gen = torch.Generator().manual_seed(0)
        self.dataset_size = ctx.dataset_size
        self.world_size = ctx.world_size
        # A bank cannot offer more distinct negatives than it has other entries (matters on tiny datasets).
        self.negatives = min(cfg.negatives, ctx.dataset_size - 1) if cfg.bank == "memory" else cfg.negatives
        if cfg.bank == "memory":
            self.bank_s = MomentumBank(ctx.dataset_size, cfg.feat_dim, cfg.momentum, gen)  # student vectors
            self.bank_t = MomentumBank(ctx.dataset_size, cfg.feat_dim, cfg.momentum, gen)  # teacher vectors
            # log NCE normalisers, fixed from the first batch
            self.register_buffer("log_z_s", torch.zeros(()))
            self.register_buffer("log_z_t", torch.zeros(()))
            self.register_buffer("z_set", torch.zeros((), dtype=torch.bool))
            self.sampler = self._sampler(cfg, ctx)
        else:
            self.queue_s = FeatureQueue(cfg.negatives, cfg.feat_dim, gen)
            self.queue_t = FeatureQueue(cfg.negatives, cfg.feat_dim, gen)

    @staticmethod
    def _sampler(cfg: CRDConfig, ctx) -> OtherClassSampler | None:
        if cfg.sampling == "uniform":
            return None
        if ctx.train_labels is None:
            raise ConfigError("crd's other-class negatives need the training labels, which this dataset does not "
                              "expose; set method_args.sampling=uniform")
        if len(torch.unique(ctx.train_labels)) < 2:
            raise ConfigError("crd's other-class negatives need at least two classes; set method_args.sampling=uniform")
        return OtherClassSampler(ctx.train_labels).to(ctx.device)

    def forward(self, batch, student, teacher, state):
        c = self.cfg
        v_s = self.embed_s(student.features["embedding"])
        v_t = self.embed_t(teacher.features["embedding"])
        contrast = self._memory_loss(v_s, v_t, batch.index) if c.bank == "memory" else self._queue_loss(v_s, v_t)
        terms = {"ce": c.ce_weight * self.cross_entropy(student.logits, batch.target), "crd": c.crd_weight * contrast}
        if c.kd_weight > 0:
            terms["kd"] = kd_term(c.kd_weight, student.logits, teacher.logits, c.kd_temperature)
        return terms

    def _memory_loss(self, v_s, v_t, index):
        c = self.cfg
        if self.sampler is not None:
            negatives = self.sampler(index, self.negatives)
        else:
            negatives = torch.randint(0, self.dataset_size, (index.shape[0], self.negatives), device=index.device)
        sampled = torch.cat([index[:, None], negatives], 1)  # column 0: the sample's own entry, the positive
        # teacher vectors against the student bank, and student vectors against the teacher bank
        logits_t = self.bank_s.scores(v_t, sampled) / c.nce_temperature
        logits_s = self.bank_t.scores(v_s, sampled) / c.nce_temperature
        with torch.no_grad():  # Z = mean(exp(logit)) * N, fixed from the first batch (log-space, no overflow)
            log_n = math.log(self.dataset_size)
            first = torch.stack([log_mean(logits_s), log_mean(logits_t)]) + log_n
            first = all_reduce_(first) / self.world_size  # the same normalisers on every process
            log_z_s = torch.where(self.z_set, self.log_z_s, first[0])
            log_z_t = torch.where(self.z_set, self.log_z_t, first[1])
            if self.training:  # fixed by the first training batch; an evaluation pass only reads them
                self.log_z_s.copy_(log_z_s)
                self.log_z_t.copy_(log_z_t)
                self.z_set.fill_(True)
        loss = nce_loss(logits_s, log_z_s, self.dataset_size) + nce_loss(logits_t, log_z_t, self.dataset_size)
        # every process writes the whole global batch, so the banks stay identical across processes; the write waits
        # for after_step, as the backward pass reads the banks this step scored against
        if self.training:  # an evaluation pass (a user's validation loss) scores against the banks, never writes
            self.pending = (gather_batch(index), gather_batch(v_s.detach()), gather_batch(v_t.detach()))
        return loss

    def after_step(self) -> None:
        pending, self.pending = getattr(self, "pending", None), None
        if pending is not None:
            index, v_s, v_t = pending
            self.bank_s.update(index, v_s)
            self.bank_t.update(index, v_t)

    def _queue_loss(self, v_s, v_t):
        tau = self.cfg.nce_temperature
        target = torch.zeros(v_s.shape[0], dtype=torch.long, device=v_s.device)

        def info_nce(anchor, positive, queue):
            logits = torch.cat([(anchor * positive).sum(1, keepdim=True), anchor @ queue.snapshot(anchor.dtype).T], 1)
            return F.cross_entropy(logits / tau, target)

        loss = info_nce(v_s, v_t, self.queue_t) + info_nce(v_t, v_s, self.queue_s)
        self.queue_s.push(gather_batch(v_s.detach()))
        self.queue_t.push(gather_batch(v_t.detach()))
        return loss
