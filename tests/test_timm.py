"""timm models by name: built offline, their stages and embedding read through hooks, a heterogeneous pair
(a CNN teacher, a ViT student) distilled by logit methods, feature-map methods saying why they do not apply."""

import pytest
import torch

pytest.importorskip("timm")

from kdforge.data.inmemory import Batch  # noqa: E402
from kdforge.engine.models import build_model  # noqa: E402
from kdforge.errors import ConfigError, NotApplicableError  # noqa: E402
from kdforge.methods import MethodContext, StepState, build_method  # noqa: E402
from kdforge.models import TappedModel, embedding_dim  # noqa: E402


def test_timm_models_declare_stages_and_embedding_from_timm():
    cnn = build_model("timm:convnext_atto", 10, 3, 32)
    vit = build_model("timm:vit_tiny_patch16_224", 10, 3, 32)
    x = torch.randn(2, 3, 32, 32)
    out = TappedModel(cnn, ("stages", "embedding"))(x)
    assert out.logits.shape == (2, 10) and out.features["embedding"].shape == (2, embedding_dim(cnn))
    assert [tuple(out.features[f"stage{i}"].shape[1:3]) for i in range(4)] == [(40, 8), (80, 4), (160, 2), (320, 1)]
    with torch.no_grad():  # the embedding is what timm's own forward_head(pre_logits=True) gives
        assert torch.allclose(TappedModel(vit, ("embedding",))(x).features["embedding"],
                              vit.forward_head(vit.forward_features(x), pre_logits=True), atol=1e-5)


@pytest.mark.parametrize("method", ["kd", "ckd", "dkd", "dist"])
def test_a_cnn_teacher_distils_a_vit_student_with_logit_methods(method):
    torch.manual_seed(0)
    teacher = build_model("timm:convnext_atto", 10, 3, 32).eval()
    student = build_model("timm:vit_tiny_patch16_224", 10, 3, 32)
    m = build_method(method, {}, MethodContext(num_classes=10, student=student, teacher=teacher))
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with torch.no_grad():
        t_out = TappedModel(teacher, m.teacher_taps)(x)
    terms = m(Batch(torch.arange(4), x, y), TappedModel(student, m.student_taps)(x), t_out, StepState(30, 0, 30.0))
    sum(terms.values()).backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert student.patch_embed.proj.weight.grad.abs().sum() > 0


def test_feature_map_methods_and_unknown_names_say_why_on_one_line():
    teacher = build_model("timm:convnext_atto", 10, 3, 32)
    student = build_model("timm:vit_tiny_patch16_224", 10, 3, 32)
    with pytest.raises(NotApplicableError, match="convolutional stage features"):
        build_method("at", {}, MethodContext(num_classes=10, student=student, teacher=teacher))
    with pytest.raises(ConfigError, match="timm has no model 'convnext_nonexistent'"):
        build_model("timm:convnext_nonexistent", 10, 3, 32)


@pytest.mark.parametrize("method", ["fitnet", "at", "nst", "ofd", "reviewkd", "kdsvd", "vid", "sp", "rkd", "pkt"])
def test_every_feature_method_distils_the_vit_or_says_why_not_on_one_line(method):
    """Through kdforge.Distiller, as a user's own loop would: either a finite step whose gradient reaches the ViT,
    or a NotApplicableError of one line."""
    import kdforge

    torch.manual_seed(0)
    teacher = build_model("timm:convnext_atto", 10, 3, 32)
    student = build_model("timm:vit_tiny_patch16_224", 10, 3, 32)
    try:
        d = kdforge.Distiller(teacher, student, method, input_shape=(3, 32, 32), epochs=30)
    except NotApplicableError as exc:
        assert "\n" not in str(exc) and method in str(exc)
        return
    out = d(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    out.loss.backward()
    assert all(torch.isfinite(v) for v in out.terms.values())
    assert student.patch_embed.proj.weight.grad.abs().sum() > 0


def test_a_timm_model_comes_back_from_local_safetensors_and_timm_checkpoint_files(tmp_path):
    from safetensors.torch import save_file

    from kdforge.engine.models import load_model

    torch.manual_seed(0)
    original = build_model("timm:convnext_atto", 10, 3, 32).eval()
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": original.state_dict(), "epoch": 3}, tmp_path / "timm_checkpoint.pth.tar")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = original(x)
        for path in ("w.safetensors", "timm_checkpoint.pth.tar"):
            model = load_model(tmp_path / path, arch="timm:convnext_atto", image_size=32)
            assert torch.equal(model(x), expected)
