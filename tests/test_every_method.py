"""Every registered method, tested the same way through kdforge.Distiller on a zoo pair (resnet20 -> resnet8):
it builds, returns the same term names at every step, every term is a finite scalar, gradients reach the
student and the method's own parameters, and its state round-trips through a checkpoint; in float32 and under bf16
autocast (the trainer's forward under amp, which `amp: auto` turns on where the hardware has bf16 units)."""

import io

import pytest
import torch

import kdforge
from kdforge.methods import METHODS, StepState
from kdforge.models import create_model

# methods whose modes change their whole shape run once per mode
MODES = {"refilled": [{"stage": "1"}, {"stage": "2"}, {"stage": "2", "centers": "local"}]}
CASES = [(name, args) for name in METHODS.names() for args in MODES.get(name, [{}])]
N, BATCH = 40, 8


def test_the_cases_cover_the_whole_registry():
    assert {name for name, _ in CASES} == set(METHODS.names())


@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bf16"])
@pytest.mark.parametrize("name,args", CASES, ids=[f"{n}-{'-'.join(map(str, a.values())) or 'default'}"
                                                     for n, a in CASES])
def test_every_method_trains_the_same_way(name, args, device, amp):
    torch.manual_seed(0)
    # classmates in every batch
    images, labels = torch.randn(N, 3, 32, 32, device=device), torch.arange(N, device=device) % 4
    teacher = create_model("resnet20", 10).to(device) if METHODS.get(name).uses_teacher(args) else None

    def student():
        return create_model("resnet8", 10).to(device)

    d = kdforge.Distiller(teacher, student(), name, epochs=20, steps_per_epoch=N // BATCH, dataset_size=N,
                          train_labels=labels, build_student=student, **args)
    if d.method.needs_preparation():
        d.prepare((images[i:i + BATCH], labels[i:i + BATCH], torch.arange(i, i + BATCH, device=device))
                  for i in range(0, N, BATCH))
    optimizer = torch.optim.SGD(d.parameters(), lr=0.01, momentum=0.9)
    own = [p for p in d.method.parameters() if p.requires_grad]
    names = None
    for step in range(2):
        index = torch.arange(step * BATCH, (step + 1) * BATCH, device=device)
        # epoch 10 of 20: every warm-up of an in-context or decoupled term is over
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):  # the forward only, as the trainer
            out = d(images[index], labels[index], index, state=StepState(10, step, 10.0))
        assert names is None or list(out.terms) == names, "the term names changed between steps"
        names = list(out.terms)
        for term, value in out.terms.items():
            assert value.dim() == 0 and torch.isfinite(value), term
        optimizer.zero_grad()
        out.loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.student.parameters())
        if own:
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in own), "no gradient reaches its own modules"
        optimizer.step()
        d.after_step()
    buffer = io.BytesIO()
    torch.save(d.method.state_dict(), buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=True, map_location=device)  # a checkpoint holds tensors only
    fresh = kdforge.Distiller(teacher, student(), name, epochs=20, steps_per_epoch=N // BATCH, dataset_size=N,
                              train_labels=labels, build_student=student, **args)
    fresh.method.load_state_dict(restored)
    for key, value in d.method.state_dict().items():
        assert torch.equal(fresh.method.state_dict()[key], value), key
