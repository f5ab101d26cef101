import pytest
import torch

from kdforge.errors import ConfigError
from kdforge.models import MODELS, FeatureTaps, count_parameters, create_model, model_info, standard_taps

# Parameter counts (millions) of the CIFAR-100 KD grid's models, as published with the grid.
GRID_PARAMS_M = {
    "resnet20": 0.28, "resnet56": 0.86, "resnet110": 1.74, "resnet8x4": 1.23, "resnet32x4": 7.43,
    "wrn_16_2": 0.70, "wrn_40_1": 0.57, "wrn_40_2": 2.26, "vgg8": 3.97, "vgg13": 9.46,
    "MobileNetV2": 0.81, "ShuffleV1": 0.95, "ShuffleV2": 1.36, "ResNet50": 23.71,
}
CIFAR_ZOO = ["resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4",
             "resnet32x4", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "vgg8", "vgg11", "vgg13", "vgg16",
             "vgg19", "MobileNetV2", "ShuffleV1", "ShuffleV2", "ResNet50"]


@pytest.mark.parametrize("name,millions", sorted(GRID_PARAMS_M.items()))
def test_parameter_counts_match_the_grid_within_one_percent(name, millions):
    count = count_parameters(create_model(name, 100)) / 1e6
    assert abs(count - millions) / millions < 0.01, f"{name}: {count:.3f}M vs {millions}M"


@pytest.mark.parametrize("name", CIFAR_ZOO)
def test_cifar_zoo_forward_and_declared_taps(name):
    model = create_model(name, 10).eval()
    info = model_info(model)
    taps = FeatureTaps(model, standard_taps(model, ("embedding", "stages")))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    emb = taps.outputs["embedding"].flatten(1)
    classifier = model.get_submodule(info.classifier)
    classifier = classifier[0] if isinstance(classifier, torch.nn.Sequential) else classifier
    assert emb.shape == (2, classifier.in_features)
    # The embedding tap really is the classifier's input.
    assert torch.allclose(classifier(emb), logits, atol=1e-5)
    sizes = [taps.outputs[f"stage{i}"].shape[-1] for i in range(len(info.stages))]
    assert sizes == sorted(sizes, reverse=True) and len(info.stages) >= 3


def test_state_dict_names_follow_the_released_teacher_layout():
    # Key names of the public CIFAR-100 teacher checkpoints, written out by hand.
    expected = {
        "resnet8x4": ["conv1.weight", "layer1.0.downsample.0.weight", "layer3.0.bn2.running_var", "fc.bias"],
        "wrn_40_2": ["block1.layer.0.convShortcut.weight", "block3.layer.5.conv2.weight", "bn1.weight", "fc.weight"],
        "vgg13": ["block0.0.weight", "block0.0.bias", "block4.4.running_mean", "classifier.weight"],
        "MobileNetV2": ["conv1.0.weight", "blocks.0.0.conv.0.weight", "conv2.1.weight", "classifier.0.weight"],
        "ShuffleV1": ["layer1.0.conv1.weight", "layer3.3.bn3.bias", "linear.weight"],
        "ShuffleV2": ["layer1.0.conv5.weight", "layer2.7.conv3.weight", "conv2.weight", "bn2.bias", "linear.bias"],
        "ResNet50": ["layer4.2.conv3.weight", "layer1.0.shortcut.0.weight", "linear.weight"],
    }
    for name, keys in expected.items():
        state = create_model(name, 100).state_dict()
        for key in keys:
            assert key in state, f"{name} lacks {key}"


@pytest.mark.parametrize("name,size", [("cnn8", 8), ("mlp8", 8), ("cnn28", 28), ("cnn28_small", 28), ("mlp28", 28)])
def test_small_nets_for_grayscale_inputs(name, size):
    model = create_model(name, 10)
    taps = FeatureTaps(model, standard_taps(model, ("embedding", "stages")))
    assert model(torch.randn(3, 1, size, size)).shape == (3, 10)
    assert taps.outputs["embedding"].dim() == 2


def test_small_student_is_much_smaller_than_teacher():
    assert count_parameters(create_model("mlp8", 10)) * 10 < count_parameters(create_model("cnn8", 10))


def test_torchvision_models_by_name_expose_embedding_through_input_tap():
    pytest.importorskip("torchvision")
    model = create_model("tv_resnet18", 7).eval()
    taps = FeatureTaps(model, standard_taps(model, ("embedding", "stages")))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert taps.outputs["embedding"].shape == (1, 512)
    assert taps.outputs["stage3"].shape[1] == 512


def test_unknown_model_and_bad_tap_path_are_config_errors():
    with pytest.raises(ConfigError, match="did you mean resnet8x4"):
        create_model("resnet8x", 10)
    with pytest.raises(ConfigError, match="no module"):
        FeatureTaps(create_model("resnet8", 10), {"x": "layer9"})
    with pytest.raises(ConfigError):
        create_model("resnet8", 0)
    assert "resnet32x4" in MODELS.names()


def test_mobilenet_v1_for_imagenet():
    model = create_model("MobileNetV1", 1000).eval()
    assert abs(count_parameters(model) / 1e6 - 4.23) < 0.05  # the standard width-1.0 MobileNetV1
    taps = FeatureTaps(model, standard_taps(model, ("stages",)))
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert [taps.outputs[f"stage{i}"].shape[-1] for i in range(4)] == [56, 28, 14, 7]


def test_a_compiled_tapped_forward_traces_each_state_once_whoever_calls_it():
    """A compiled forward guards on the keys of the dict its hooks write. Training through a view, evaluating by a
    direct call, then a second view on the same model (a method's evaluation taps) must each reuse their graph:
    one graph for the training pass, one for the no-grad pass, however often and from wherever they are called."""
    import torch._dynamo as dynamo

    from kdforge.models import TappedModel

    dynamo.reset()
    model = create_model("resnet8", 10)
    model.compile(backend="eager")
    view = TappedModel(model, ("embedding",))
    x = torch.randn(4, 3, 32, 32)
    before = dynamo.utils.counters["stats"]["unique_graphs"]
    for _ in range(3):
        assert view(x).features["embedding"].shape == (4, 64)
        with torch.no_grad():
            model(x)  # an evaluation's direct call: the hooks fire and write into the view's dict
            second = TappedModel(model, ("embedding",))
            assert second(x).features["embedding"].shape == (4, 64)
            second.taps.remove()
    # the training pass, the no-grad pass, and the no-grad pass with a second hook set: three states, three graphs
    assert dynamo.utils.counters["stats"]["unique_graphs"] - before == 3
    dynamo.reset()


def test_feature_taps_hold_the_latest_pass_and_start_with_every_name():
    model = create_model("resnet8", 10).eval()
    taps = FeatureTaps(model, standard_taps(model, ("embedding", "stages")))
    assert taps.outputs == dict.fromkeys(["embedding", "stage0", "stage1", "stage2"])
    with torch.no_grad():
        logits = model(torch.ones(2, 3, 32, 32))
        first = taps.outputs["embedding"]
        model(torch.zeros(2, 3, 32, 32))
    assert taps.outputs["embedding"] is not first
    assert torch.allclose(model.fc(taps.outputs["embedding"].flatten(1)), model(torch.zeros(2, 3, 32, 32)))
    assert logits.shape == (2, 10)
    taps.remove()
