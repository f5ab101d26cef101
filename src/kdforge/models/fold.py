"""BatchNorm folded into the convolution before it, for a frozen model that only runs inference (the teacher).

In eval mode BN is the affine map y = (x - mean) / sqrt(var + eps) * gamma + beta, so a convolution followed by it
equals one convolution with rescaled weights and a bias: one kernel and one pass over the activations fewer.
Pairs are found by running the model once and matching each BatchNorm's input to the convolution output it is,
so no module is rewritten except the folded BatchNorms, which become identities at the same module paths (hooks
addressed by path keep working). A fold that would change the output (a convolution output read by something
else too) is caught by comparing the folded copy with the original on the probe, and the original is kept.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn as nn


@torch.no_grad()
def _conv_bn_pairs(model: nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    # id of a convolution's output -> (the convolution's path, the tensor): holding the tensor keeps its id unique
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    pairs, handles = [], []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(
                lambda m, i, out, name=name: outputs.__setitem__(id(out), (name, out))))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(
                lambda m, i, name=name: pairs.append((outputs[id(i[0])][0], name)) if id(i[0]) in outputs else None))
    try:
        model(probe)
    finally:
        for h in handles:
            h.remove()
    convs = [c for c, _ in pairs]
    return [(c, b) for c, b in pairs if convs.count(c) == 1]  # a convolution run more than once is left alone


@contextlib.contextmanager
def full_precision():
    """fp32 convolutions and matrix products in IEEE precision on CUDA (no TF32) inside the block. A fold is judged
    by its outputs, and TF32's 10-bit mantissa rounds the folded and the unfolded convolutions differently by more
    than the fold itself changes them (on an H200 every fold was refused before this)."""
    backends = [torch.backends.cudnn.conv, torch.backends.cuda.matmul]
    saved = [b.fp32_precision for b in backends]
    for b in backends:
        b.fp32_precision = "ieee"
    try:
        yield
    finally:
        for b, value in zip(backends, saved):
            b.fp32_precision = value


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + shift, requires_grad=False)


@torch.no_grad()
def fold_batchnorm(model: nn.Module, probe: torch.Tensor, atol: float = 1e-4) -> tuple[nn.Module, int]:
    """(an eval-mode copy of `model` with BatchNorms folded, how many) — or (`model`, 0) when folding would change
    its outputs on `probe` by more than `atol` relative to their scale."""
    model.eval()
    pairs = _conv_bn_pairs(model, probe)
    if not pairs:
        return model, 0
    folded = copy.deepcopy(model)
    for conv_path, bn_path in pairs:
        bn = folded.get_submodule(bn_path)
        if bn.running_mean is None:  # BatchNorm without running statistics normalises per batch: not foldable
            continue
        _fold(folded.get_submodule(conv_path), bn)
        folded.set_submodule(bn_path, nn.Identity())
    with full_precision():
        reference, result = model(probe).float(), folded(probe).float()
    if not torch.allclose(result, reference, atol=atol * max(1.0, reference.abs().max().item()), rtol=0):
        return model, 0
    return folded, len(pairs)
