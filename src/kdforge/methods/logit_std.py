"""Logit standardisation (Sun et al., CVPR 2024): each model's logits are z-scored per sample before the
temperature, so that the student matches the teacher's logit *relations* rather than their range. A switch
(`method_args.logit_std: true`) of every logit method, not a method of its own; presets pair it with the base
temperature and weights of the official configs."""

from __future__ import annotations

import torch


def standardize_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per row (z - mean) / (std + 1e-7), std with Bessel's correction as the official code's `Tensor.std`."""
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least float32 (bf16 under autocast)
    return (z - z.mean(dim=-1, keepdim=True)) / (z.std(dim=-1, keepdim=True) + 1e-7)


def maybe_standardize(enabled: bool, *logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The logits as given, or each standardised (a method's `logit_std` switch)."""
    return tuple(standardize_logits(z) for z in logits) if enabled else logits
