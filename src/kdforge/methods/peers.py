"""Peers trained together from scratch (deep mutual learning, Zhang et al., CVPR 2018), shared by `dml` and
the online paradigm of `ickd`.

The trainer's student is peer 0; the method owns peers 1..P-1 (same architecture, their own random
initialisation), so they are optimised, checkpointed and resumed with the method. Only peer 0 is evaluated.
"""

from __future__ import annotations

import torch
from torch import nn

from kdforge.methods.kd import kd_loss
from kdforge.models import ModelOutput, TappedModel


def mutual_loss(outputs: list[torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """Sum over peers i of the mean over the other peers j of T^2 KL(softmax(z_j/T) || softmax(z_i/T)),
    with z_j detached: each peer learns from the others, never the other way round through this term."""
    total = outputs[0].new_zeros((), dtype=torch.float32)
    for i, z_i in enumerate(outputs):
        others = [z_j.detach() for j, z_j in enumerate(outputs) if j != i]
        total = total + sum(kd_loss(z_i, z_j, temperature) for z_j in others) / len(others)
    return total


class PeerGroup(nn.Module):
    """Peers 1..P-1 (peer 0 is the trainer's student), each tapped for the features a method wants."""

    def __init__(self, build_student, count: int, taps: tuple[str, ...] = ()):
        super().__init__()
        self.models = nn.ModuleList([build_student() for _ in range(count - 1)])
        self._views = [TappedModel(m, taps) for m in self.models]

    def modules_to_compile(self) -> list[nn.Module]:
        return list(self.models)

    def forward(self, x: torch.Tensor) -> list[ModelOutput]:
        return [view(x) for view in self._views]
