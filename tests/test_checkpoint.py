import pickle

import pytest
import torch

from kdforge.engine.checkpoint import latest_checkpoint, load_into, load_weights, read_checkpoint, save_checkpoint
from kdforge.errors import CheckpointError
from kdforge.models import create_model


def test_roundtrip_and_previous_kept(tmp_path):
    save_checkpoint(tmp_path, {"step": 1, "w": torch.ones(3)})
    save_checkpoint(tmp_path, {"step": 2, "w": torch.zeros(3)})
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    assert read_checkpoint(tmp_path / "checkpoint.prev.pt")["step"] == 1
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_latest_checkpoint_is_detected_and_previous_used(tmp_path, damage):
    save_checkpoint(tmp_path, {"step": 1})
    save_checkpoint(tmp_path, {"step": 2, "pad": torch.arange(1000)})
    latest = tmp_path / "checkpoint.pt"
    blob = bytearray(latest.read_bytes())
    if damage == "flip":
        blob[len(blob) // 2] ^= 0xFF
    else:
        blob = blob[: len(blob) // 2]
    latest.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        read_checkpoint(latest)
    notes = []
    assert latest_checkpoint(tmp_path, log=notes.append)["step"] == 1
    assert notes and "trying the previous" in notes[0]


class Payload:
    def __reduce__(self):
        return (print, ("this would run code",))


def test_checkpoint_that_needs_arbitrary_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": Payload()}, f)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_weights(path)
    torch.save({"model": {"w": torch.ones(1)}, "extra": Payload()}, tmp_path / "evil2.pth")
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_weights(tmp_path / "evil2.pth")


def test_foreign_layouts_load(tmp_path):
    model = create_model("resnet8", 10)
    state = model.state_dict()
    # {"model": state_dict, "epoch": ..., "accuracy": ...} as saved by the common KD codebases' teachers
    torch.save({"epoch": 240, "model": state, "accuracy": torch.tensor(72.3), "optimizer": {"state": {}}},
               tmp_path / "ckpt_epoch_240.pth")
    loaded, meta = load_weights(tmp_path / "ckpt_epoch_240.pth")
    assert meta["epoch"] == 240 and set(loaded) == set(state)
    # DataParallel prefixes and files without BatchNorm's num_batches_tracked
    wrapped = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(wrapped, tmp_path / "dp.pth")
    fresh = create_model("resnet8", 10)
    load_into(fresh, load_weights(tmp_path / "dp.pth")[0], "dp.pth")
    assert torch.equal(fresh.conv1.weight, model.conv1.weight)
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "m.safetensors"))
    assert set(load_weights(tmp_path / "m.safetensors")[0]) == set(state)


def test_architecture_mismatches_are_explained(tmp_path):
    state = create_model("resnet8", 10).state_dict()
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_into(create_model("resnet14", 10), state, "x")
    with pytest.raises(CheckpointError, match="number of classes"):
        load_into(create_model("resnet8", 100), state, "x")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(tmp_path / "missing.pth")
    torch.save({"note": "hello"}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="holds no state dict"):
        load_weights(tmp_path / "empty.pth")


def test_a_runs_recorded_precision_is_its_decision_else_its_explicit_setting_else_float32():
    from kdforge.engine.checkpoint import recorded_amp

    assert recorded_amp({"amp": True}, {"amp": False}) is True  # the decision wins over the setting
    assert recorded_amp({"amp": False}, {"amp": "auto"}) is False
    assert recorded_amp({}, {"amp": True}) is True  # a run from before the decision was recorded
    assert recorded_amp({}, {"amp": "auto"}) is False and recorded_amp({}) is False
