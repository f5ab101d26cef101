"""REFILLED's two losses (Ye, Lu, Zhan, CVPR 2020; TPAMI 2022), as pure functions.

Stage 1, comparison matching: for semi-hard triplets mined with the *student's* distances, the teacher's
and the student's softmax over [-d(a,p), -d(a,n_1), ..., -d(a,n_K)] / tau are matched by KL(q^T || q^S);
only distances within one model are compared, so the two embeddings may have different widths.
Stage 2, the teacher's embedding-induced classifier: scores <f_t(x), c_k> against the teacher's centres of
the student's classes give soft labels over the batch's classes for the student's logits.

The method `refilled` runs both stages in sequence (`stage: both`, the default): stage 1 in `OUT/stage1`,
its checkpoint chosen by nearest-class-mean accuracy on the held-out split (`best.pt`), then stage 2 in
`OUT/stage2` from those weights with a fresh optimiser. Each stage is an ordinary resumable run. As in the
official code, each stage runs the whole schedule (`budget: paper`, 200 + 200 epochs there against CE's 200);
`budget: equal` splits one schedule between the two stages, for comparisons at the same training cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdforge.collective import all_reduce_
from kdforge.errors import ConfigError
from kdforge.methods.base import Method, Preparation
from kdforge.models import TappedModel

MASKED = -1e4  # a finite stand-in for -inf: exp underflows to 0, and 0 * (finite) stays 0 in the KL


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """Euclidean (not squared) distances between L2-normalised embeddings; exact zeros on the diagonal."""
    e = F.normalize(emb.float(), dim=1)
    squared = (2 - 2 * e @ e.T).clamp_min(0)
    eye = torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
    return squared.masked_fill(eye, 0).add(1e-12).sqrt().masked_fill(eye, 0)


def semi_hard_mask(student_dist: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """(B, B, B) boolean: [a, p, n] is a semi-hard triplet under the given distances:
    y_a = y_p, a != p, y_n != y_a and 0 < d(a,n) - d(a,p) <= margin."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    positive = same & ~eye  # [a, p]
    negative = ~same  # [a, n]
    gap = student_dist.unsqueeze(1) - student_dist.unsqueeze(2)  # [a, p, n] = d(a,n) - d(a,p)
    return positive.unsqueeze(2) & negative.unsqueeze(1) & (gap > 0) & (gap <= margin)


def _tuple_logits(dist: torch.Tensor, valid: torch.Tensor, tau: float) -> torch.Tensor:
    """(B, B, 1+B) logits [-d(a,p), -d(a,n)...] / tau, invalid negatives masked out."""
    b = dist.shape[0]
    positive = -dist.unsqueeze(2) / tau  # [a, p, 1]
    negatives = (-dist / tau).unsqueeze(1).expand(b, b, b).masked_fill(~valid, MASKED)  # [a, p, n]
    return torch.cat([positive, negatives], dim=2)


def refilled_stage1_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, labels: torch.Tensor,
                         tau: float = 4.0, margin: float = 0.2, form: str = "tuple",
                         truncate: bool = False) -> torch.Tensor:
    """Unweighted mean KL(q^T || q^S) over the mined (a, p) tuples (padding masked), or over the triplets
    for `form="triplet"` (Bernoulli KL of sigmoid((d_an - d_ap) / tau)). Nothing mined: a zero that is
    still attached to the student's graph. `truncate` keeps the same number of negatives (the fewest any
    tuple has) in every tuple, as the TPAMI code does."""
    d_s = pairwise_distances(student_emb)
    with torch.no_grad():
        d_t = pairwise_distances(teacher_emb)
        valid = semi_hard_mask(d_s.detach(), labels, margin)
    attached_zero = d_s.sum() * 0.0
    if form == "triplet":
        gap_s = (d_s.unsqueeze(1) - d_s.unsqueeze(2)) / tau
        gap_t = (d_t.unsqueeze(1) - d_t.unsqueeze(2)) / tau
        p_t = torch.sigmoid(gap_t)
        # KL of Bernoulli(p_t) from Bernoulli(p_s), with log-sigmoids for stability
        kl = p_t * (F.logsigmoid(gap_t) - F.logsigmoid(gap_s)) + (1 - p_t) * (F.logsigmoid(-gap_t) - F.logsigmoid(-gap_s))
        count = valid.sum()
        # the official code stacks [p, 1 - p] as 2N rows under KLDivLoss(reduction="batchmean"): half the mean KL
        return attached_zero + 0.5 * (kl * valid).sum() / count.clamp_min(1)
    if form != "tuple":
        raise ValueError(f"form must be tuple or triplet, got {form!r}")
    counts = valid.sum(2)  # negatives per (a, p)
    has_tuple = counts > 0
    if truncate:
        fewest = torch.where(has_tuple, counts, counts.new_full((), valid.shape[2])).min()
        valid = valid & (valid.long().cumsum(2) <= fewest)
    log_q_s = F.log_softmax(_tuple_logits(d_s, valid, tau), dim=2)
    log_q_t = F.log_softmax(_tuple_logits(d_t, valid, tau), dim=2)
    kl = (log_q_t.exp() * (log_q_t - log_q_s)).sum(2)
    tuples = has_tuple.sum()
    return attached_zero + (kl * has_tuple).sum() / tuples.clamp_min(1)


def refilled_stage2_loss(student_logits: torch.Tensor, teacher_emb: torch.Tensor, centers: torch.Tensor,
                         labels: torch.Tensor, tau_t: float = 2.0, tau_s: float = 2.0,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """Unweighted batch mean of w_i * KL(p^T_i || p^S_i) over the classes present in `labels`.

    p^T_i = softmax(<f_t(x_i), c_k> / tau_t) and p^S_i = softmax(z_s,i[k] / tau_s), k over the batch's classes;
    `centers` is (num_student_classes, d_t), already normalised. Classes absent from the batch are masked
    (no host sync to find them)."""
    num_classes = centers.shape[0]
    present = torch.zeros(num_classes, dtype=torch.bool, device=labels.device)
    present[labels] = True
    scores = teacher_emb.float() @ centers.float().T
    log_p_t = F.log_softmax((scores / tau_t).masked_fill(~present, MASKED), dim=1)
    log_p_s = F.log_softmax((student_logits.float() / tau_s).masked_fill(~present, MASKED), dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1)
    if weights is not None:
        kl = kl * weights
    return kl.mean()


def confidence_weights(teacher_logits: torch.Tensor) -> torch.Tensor:
    """The TPAMI weighting: e_i = -log max softmax(teacher logits), min-max normalised in the batch,
    w_i = 2 * sigmoid(-e~_i) (confident samples weigh up to 1, uncertain ones less)."""
    entropy = -F.log_softmax(teacher_logits.float(), dim=1).max(dim=1).values
    spread = (entropy.max() - entropy.min()).clamp_min(1e-12)
    return 2 * torch.sigmoid(-(entropy - entropy.min()) / spread)


# --- the method -------------------------------------------------------------------------------------------

@dataclass
class RefilledConfig:
    stage: str = "both"  # both (stage 1 then stage 2) | 1 | 2
    # paper: each stage runs `epochs` (the official 200 + 200); equal: the two stages share `epochs`
    budget: str = "paper"
    stage1_epochs: int = 0  # 0: `epochs` (paper budget) or half of it (equal budget; stage 2 runs the rest)
    # the official code's optimiser per stage: Nesterov SGD, stage 1 cosine lr -> lr/10, stage 2 steps x0.2
    recipe: bool = True
    stage1_weight: float = 1000.0
    tau1: float = 4.0
    margin: float = 0.2
    stage1_form: str = "tuple"  # tuple | triplet (the CVPR binary form)
    truncate: bool = False  # TPAMI: every tuple keeps the fewest negatives any tuple has
    stage2_weight: float = 100.0  # lambda
    tau2: float = 2.0
    tau_s: float = 2.0  # student temperature: 2 in the REFILLED code, 1 in the GKD code
    centers: str = "global"  # global (one teacher pass over the training set) | local (per batch)
    weighting: str = "none"  # none | confidence (the TPAMI teacher-confidence weights)
    # stage 2: the backbone's rate as a fraction of the classifier's. The official code's current revision trains
    # both at the stage-2 rate (Train.py, two SGD groups at lr2); 0.1 was a superseded revision's setting
    stage2_backbone_lr: float = 1.0

    def __post_init__(self):
        choices = {"stage": ("both", "1", "2"), "stage1_form": ("tuple", "triplet"), "centers": ("global", "local"),
                   "weighting": ("none", "confidence"), "budget": ("paper", "equal")}
        self.stage = str(self.stage)
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"method_args.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if min(self.tau1, self.tau2, self.tau_s) <= 0 or self.margin <= 0 or self.stage1_epochs < 0:
            raise ConfigError("method_args: tau1, tau2, tau_s and margin must be positive, stage1_epochs >= 0")


def stage_epochs(args: RefilledConfig, epochs: int) -> tuple[int, int]:
    """(stage-1, stage-2) epochs for a run of `epochs`: each stage the whole schedule (paper budget) or one
    schedule split between them (equal budget)."""
    if args.budget == "paper":
        return args.stage1_epochs or epochs, epochs
    first = args.stage1_epochs or max(1, epochs // 2)
    if epochs - first < 1:
        raise ConfigError(f"method_args.stage1_epochs ({first}) leaves no epoch of the {epochs} for stage 2")
    return first, epochs - first


def class_centres(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """normalize(mean of the embeddings of each class); a class with no sample gets a zero row."""
    # summed in float32 whatever the autocast dtype of the embeddings (bf16 under amp)
    sums = embeddings.new_zeros(num_classes, embeddings.shape[1], dtype=torch.float32).index_add_(0, labels, embeddings.float())
    return F.normalize(sums, dim=1)


@torch.no_grad()
def embed_stream(view: TappedModel, stream, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings, labels) of a whole stream, in eval mode."""
    was_training = view.model.training
    view.model.eval()
    chunks, labels = [], []
    for batch in stream.epoch(0):
        with autocast():
            chunks.append(view(batch.input).features["embedding"].float())
        labels.append(batch.target)
    view.model.train(was_training)
    return torch.cat(chunks), torch.cat(labels)


class Refilled(Method):
    Config = RefilledConfig
    needs_teacher = True
    teacher_classes_may_differ = True
    student_taps = ("embedding",)
    teacher_taps = ("embedding",)
    description = "REFILLED: embedding comparison matching, then the teacher's embedding-induced classifier"

    @classmethod
    def pipeline(cls, cfg) -> list:
        from kdforge.config import from_dict

        args = from_dict(RefilledConfig, cfg.method_args, "method_args")
        if args.stage != "both":
            return []
        first, second = stage_epochs(args, cfg.epochs)
        if not cfg.data.val_per_class:
            raise ConfigError("refilled chooses its stage-1 checkpoint by nearest-class-mean accuracy on a held-out "
                              "split: set data.val_per_class (e.g. 10 % of the images per class)")
        steps = sorted({max(1, round(second * f)) for f in (0.5, 0.7, 0.9)})
        # the official code's optimiser per stage: Nesterov SGD, stage 1 cosine to lr/10, stage 2 steps x0.2
        opt1 = {"schedule": "cosine", "min_lr": cfg.optim.lr / 10, "nesterov": True} if args.recipe else {}
        opt2 = {"schedule": "step", "milestones": steps, "gamma": 0.2, "nesterov": True} if args.recipe else {}
        return [("stage1", {"epochs": first, "optim": opt1, "method_args": {"stage": "1"}}),
                ("stage2", {"epochs": second, "optim": opt2, "method_args": {"stage": "2"},
                            "init_from_stage": "stage1"})]

    def __init__(self, cfg: RefilledConfig, ctx):
        super().__init__(cfg, ctx)
        if cfg.stage == "both":
            raise ConfigError("refilled with stage: both runs through kdforge.engine.pipeline.train (or `kdforge "
                              "train`), which runs the two stages; a single Trainer takes stage 1 or 2")
        self.num_classes = ctx.num_classes
        self.register_buffer("centres", torch.zeros(ctx.num_classes, 1), persistent=False)
        if cfg.stage == "1":  # the classifier is not trained in stage 1
            self.select_on, self.keeps_best = "val_ncm_top1", True

    def needs_preparation(self) -> bool:
        return self.cfg.stage == "2" and self.cfg.centers == "global"  # the teacher's class centres

    def prepare(self, prep: Preparation) -> None:
        if not self.needs_preparation():
            return
        from kdforge.memory.incontext import fingerprint, load_or_build

        def build() -> dict:
            emb, labels = embed_stream(prep.teacher, prep.clean_train, prep.autocast)
            return {"centres": class_centres(emb, labels, self.num_classes).cpu()}

        key = fingerprint("refilled-centres-v1", prep.teacher_key, prep.data_key, self.num_classes)
        blob = load_or_build(prep.cache_dir / "refilled" / f"{key}.pt", key, build, prep.is_main)
        self.centres = blob["centres"].to(self.centres.device)

    def forward(self, batch, student, teacher, state):
        c = self.cfg
        t_emb = teacher.features["embedding"]
        if c.stage == "1":
            loss = refilled_stage1_loss(student.features["embedding"], t_emb, batch.target, c.tau1, c.margin,
                                        c.stage1_form, c.truncate)
            # the classifier is not trained in stage 1; its zero-weighted logits keep every parameter in the graph,
            # which DistributedDataParallel requires of each step
            return {"stage1": c.stage1_weight * loss + 0.0 * student.logits.float().sum()}
        centres = self.centres if c.centers == "global" else class_centres(t_emb.detach(), batch.target,
                                                                          self.num_classes)
        weights = confidence_weights(teacher.logits) if c.weighting == "confidence" else None
        loss = refilled_stage2_loss(student.logits, t_emb, centres, batch.target, c.tau2, c.tau_s, weights)
        return {"ce": self.cross_entropy(student.logits, batch.target), "stage2": c.stage2_weight * loss}

    def student_lr_scales(self, student) -> dict:
        if self.cfg.stage != "2":
            return {}
        from kdforge.models import model_info

        # 1.0 by default: the official code's current revision trains the whole stage-1 student at the stage-2 rate
        return {"": self.cfg.stage2_backbone_lr, model_info(student).classifier: 1.0}

    @torch.no_grad()
    def evaluate_extra(self, ctx) -> dict:
        """Stage 1 trains no classifier: nearest-class-mean accuracy of the embedding (class means from the
        un-augmented training set) on the held-out split (which selects the checkpoint) and on the test split."""
        if self.cfg.stage != "1":
            return {}
        view = TappedModel(ctx.student, ("embedding",))
        try:
            emb, labels = embed_stream(view, ctx.clean_train, ctx.autocast)
            centres = class_centres(emb, labels, self.num_classes)
            out = {"test_ncm_top1": ncm_accuracy(view, ctx.test, centres, ctx.autocast)}
            if ctx.val is not None:
                out["val_ncm_top1"] = ncm_accuracy(view, ctx.val, centres, ctx.autocast)
        finally:
            view.taps.remove()
        return out


def ncm_accuracy(view: TappedModel, stream, centres: torch.Tensor, autocast) -> float:
    """Top-1 (%) of the nearest normalised class mean, by cosine, summed over processes."""
    emb, labels = embed_stream(view, stream, autocast)
    hits = ((F.normalize(emb, dim=1) @ centres.T).argmax(1) == labels).sum().double()
    counts = all_reduce_(torch.stack([hits, torch.tensor(float(labels.numel()), dtype=torch.float64,
                                                          device=hits.device)]))
    return 100.0 * counts[0].item() / max(counts[1].item(), 1.0)
