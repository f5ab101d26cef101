"""The zoo's CIFAR models have the state-dict layout of the common CIFAR KD codebases (RepDistiller, mdistiller),
so their released checkpoints load as they are.

`data/cifar_zoo_state_dicts.json` holds, for every model name those codebases share with the zoo, each
state-dict key and its shape at 100 classes, in their order, as their public model code builds it
(mdistiller/models/cifar: resnet.py, resnetv2.py, wrn.py, vgg.py — `vggN` is their `vggN_bn` —, mobilenetv2.py —
`MobileNetV2` is their `mobile_half` —, ShuffleNetv1.py, ShuffleNetv2.py).
"""

import json
from pathlib import Path

import pytest
import torch

from kdforge.models import create_model

REFERENCE = json.loads((Path(__file__).parent / "data" / "cifar_zoo_state_dicts.json").read_text())


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_state_dict_keys_and_shapes_match_the_common_codebases(name):
    theirs = [(key, tuple(shape)) for key, shape in REFERENCE[name]]
    ours = [(key, tuple(t.shape)) for key, t in create_model(name, 100).state_dict().items()]
    assert dict(ours) == dict(theirs)
    assert [k for k, _ in ours] == [k for k, _ in theirs]  # the same order, too


def test_shufflev2_stem_and_resnet18_run_on_cifar_inputs():
    shuffle, resnet18 = create_model("ShuffleV2", 100), create_model("ResNet18", 100)
    assert shuffle.conv1.kernel_size == (1, 1) and shuffle.conv1.out_channels == 24
    x = torch.randn(2, 3, 32, 32)
    assert shuffle(x).shape == (2, 100) and resnet18(x).shape == (2, 100)
    # a checkpoint of the common codebases' layout loads strictly
    state = {key: torch.zeros(shape) for key, shape in REFERENCE["ResNet18"]}
    resnet18.load_state_dict(state, strict=True)
