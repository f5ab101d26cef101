"""On-device accumulation of one epoch's loss terms and accuracy; the host reads it every N steps."""

from __future__ import annotations

import torch

from kdforge.collective import all_reduce_


def _max():
    import torch.distributed as dist

    return dist.ReduceOp.MAX


class EpochMeter:
    """Sums of each loss term (x batch size), the total, correct predictions and the sample count,
    plus the first step at which each term went non-finite. Nothing here syncs with the host except
    `read()` and `first_nonfinite()`."""

    def __init__(self, device: torch.device):
        self.device = device
        self.names: list[str] | None = None
        self.sums: torch.Tensor | None = None
        self.bad_step: torch.Tensor | None = None

    def _allocate(self, names: list[str]) -> None:
        self.names = names
        self.sums = torch.zeros(len(names) + 3, device=self.device, dtype=torch.float64)
        self.bad_step = torch.full((len(names),), -1, device=self.device, dtype=torch.long)

    def add(self, terms: dict, total: torch.Tensor, logits: torch.Tensor, target: torch.Tensor,
            step: torch.Tensor) -> None:
        if self.names is None:
            self._allocate(list(terms))
        elif len(terms) != len(self.names):
            raise RuntimeError(f"a method must return the same loss terms every step: {self.names} then {list(terms)}")
        values = torch.stack([t.detach().float() for t in terms.values()]).double()
        # a fill kernel, not a host-to-device copy
        n = torch.full((), float(target.shape[0]), device=self.device, dtype=torch.float64)
        correct = (logits.detach().argmax(1) == target).sum().double()
        self.sums += torch.cat([values * n, torch.stack([total.detach().double() * n, correct, n])])
        nonfinite = ~torch.isfinite(values)
        self.bad_step.copy_(torch.where((self.bad_step < 0) & nonfinite, step, self.bad_step))

    def first_nonfinite(self) -> tuple[str, int] | None:
        if self.names is None:
            return None
        bad = all_reduce_(self.bad_step.clone(), _max())  # every rank must agree to stop
        for name, step in zip(self.names, bad.tolist()):
            if step >= 0:
                return name, step
        return None

    def read(self) -> dict:
        if self.names is None:
            return {}
        values = all_reduce_(self.sums.clone()).tolist()
        count = max(values[-1], 1.0)
        out = {f"loss/{n}": v / count for n, v in zip(self.names, values)}
        out.update({"loss/total": values[-3] / count, "train_top1": 100.0 * values[-2] / count})
        return out

    def reset(self) -> None:
        if self.names is not None:
            self.sums.zero_()
            self.bad_step.fill_(-1)

    def state_dict(self) -> dict:
        if self.names is None:
            return {}
        return {"names": list(self.names), "sums": self.sums.cpu(), "bad_step": self.bad_step.cpu()}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self._allocate(list(state["names"]))
            self.sums.copy_(state["sums"])
            self.bad_step.copy_(state["bad_step"])
