import pytest

from kdforge.config import TrainConfig, apply_overrides, from_dict, list_presets, load_config, load_raw
from kdforge.errors import ConfigError


def test_overrides_are_parsed_as_yaml_scalars_into_nested_sections():
    cfg = load_config("digits-teacher", ["optim.lr=0.2", "data.batch_size=32", "amp=true", "optim.milestones=[3, 5]",
                                          "teacher=null", "name=x"])
    assert cfg.optim.lr == 0.2 and cfg.data.batch_size == 32 and cfg.amp is True
    assert cfg.optim.milestones == [3, 5] and cfg.teacher is None and cfg.name == "x"


def test_unknown_keys_get_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr' \(did you mean 'lr'\?\)"):
        load_config("digits-teacher", ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="epochz"):
        load_config("digits-teacher", ["epochz=3"])


@pytest.mark.parametrize("override,needle", [
    ("epochs=abc", "epochs must be of type int"),
    ("optim.lr=-1", "optim.lr must be positive"),
    ("data.batch_size=0", "batch_size"),
    ("optim.schedule=linear", "cosine, step or constant"),
    ("amp=3", "amp must be true, false or auto"),
    ("optim=5", "optim must be a mapping"),
    ("epochs", "key=value"),
])
def test_bad_values_are_one_line_config_errors(override, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        load_config("digits-teacher", [override])
    assert "\n" not in str(err.value)


def test_every_preset_loads_and_validates():
    names = list_presets()
    assert {"cifar10-cpu-teacher", "cifar10-cpu-student", "cifar100-grid", "digits-teacher"} <= set(names)
    pairs = [n for n in names if n.startswith("cifar100-") and load_config(n).method == "kd" and "logitstd" not in n]
    assert len(pairs) == 11
    assert len([n for n in names if n.startswith("cifar100-ckd-")]) == 11
    assert len([n for n in names if n.startswith("cifar100-ckd240-")]) == 11
    assert len([n for n in names if n.startswith("cifar100-dkd-") and "logitstd" not in n]) == 11
    for prefix in ("cifar100-dist-", "cifar100-kd-logitstd-", "cifar100-dkd-logitstd-"):
        assert len([n for n in names if n.startswith(prefix)]) == 11
    for name in names:
        cfg = load_config(name)
        assert isinstance(cfg, TrainConfig)


def test_cpu_and_grid_presets_carry_the_recipes():
    teacher = load_config("cifar10-cpu-teacher")
    assert (teacher.student, teacher.epochs, teacher.data.train_per_class, teacher.data.batch_size) == ("resnet20", 30, 2000, 128)
    assert (teacher.optim.lr, teacher.optim.schedule, teacher.optim.weight_decay) == (0.1, "cosine", 5e-4)
    student = load_config("cifar10-cpu-student")
    assert (student.student, student.epochs, student.data.train_per_class) == ("resnet8", 15, 2000)
    grid = load_config("cifar100-resnet32x4-ShuffleV1")
    assert (grid.epochs, grid.optim.milestones, grid.data.batch_size, grid.optim.lr) == (240, [150, 180, 210], 64, 0.01)
    assert load_config("cifar100-resnet56-resnet20").optim.lr == 0.05
    assert grid.method == "kd" and grid.method_args == {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}


def test_yaml_that_builds_objects_is_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("student: !!python/object/apply:os.system ['echo owned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(path))


def test_base_inheritance_and_cycles(tmp_path):
    (tmp_path / "a.yaml").write_text("base: digits-teacher\nepochs: 3\noptim: {lr: 0.3}\n")
    cfg = load_config(str(tmp_path / "a.yaml"))
    assert cfg.epochs == 3 and cfg.optim.lr == 0.3 and cfg.optim.weight_decay == 5e-4 and cfg.student == "cnn8"
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'c.yaml'}\n")
    (tmp_path / "c.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_raw(str(tmp_path / "b.yaml"))
    with pytest.raises(ConfigError, match="neither a config file nor a preset"):
        load_raw("digits-teachr")


def test_from_dict_coerces_ints_to_floats_but_not_bools_to_ints():
    cfg = from_dict(TrainConfig, {"optim": {"lr": 1}, "epochs": 2.0})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.epochs, int)
    with pytest.raises(ConfigError):
        from_dict(TrainConfig, {"epochs": True})
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}


@pytest.mark.parametrize("pair,batch,lr,weight,tau", [
    ("resnet32x4-resnet8x4", 64, 0.05, 100.0, 1.0), ("ResNet50-MobileNetV2", 32, 0.01, 100.0, 1.0),
    ("resnet32x4-ShuffleV2", 64, 0.01, 100.0, 1.0), ("resnet56-resnet20", 64, 0.05, 10.0, 1.0),
    ("wrn_40_2-wrn_40_1", 32, 0.05, 50.0, 2.0), ("vgg13-MobileNetV2", 32, 0.01, 50.0, 2.0),
])
def test_ckd_presets_follow_the_official_table(pair, batch, lr, weight, tau):
    cfg = load_config(f"cifar100-ckd-{pair}")
    assert (cfg.data.batch_size, cfg.optim.lr, cfg.method_args["ckd_weight"], cfg.method_args["temperature"]) == (
        batch, lr, weight, tau)
    assert (cfg.epochs, cfg.optim.schedule, cfg.optim.weight_decay) == (480, "cosine", 5e-4)
    equal_budget = load_config(f"cifar100-ckd240-{pair}")
    assert (equal_budget.epochs, equal_budget.optim.schedule, equal_budget.data.batch_size) == (240, "step", 64)


def test_dkd_presets_carry_the_per_pair_beta():
    betas = {"resnet56-resnet20": 2.0, "resnet110-resnet32": 2.0, "vgg13-vgg8": 6.0, "wrn_40_2-wrn_16_2": 6.0,
             "wrn_40_2-wrn_40_1": 6.0, "vgg13-MobileNetV2": 6.0, "resnet32x4-resnet8x4": 8.0, "resnet32x4-ShuffleV1": 8.0}
    for pair, beta in betas.items():
        cfg = load_config(f"cifar100-dkd-{pair}")
        assert cfg.method_args["beta"] == beta and cfg.method_args["warmup_epochs"] == 20.0


def test_imagenet_presets_name_the_pairs():
    for tag, teacher, student in (("r34-r18", "tv_resnet34", "tv_resnet18"), ("r50-mv1", "tv_resnet50", "MobileNetV1")):
        for method in ("kd", "ckd", "dkd"):
            cfg = load_config(f"imagenet-{method}-{tag}")
            assert (cfg.teacher, cfg.student, cfg.method, cfg.data.dataset) == (teacher, student, method, "imagefolder")
    ckd = load_config("imagenet-ckd-r34-r18")
    assert (ckd.data.batch_size, ckd.optim.lr, ckd.epochs, ckd.optim.weight_decay) == (512, 0.2, 200, 1e-4)


def test_compile_is_true_false_or_auto_and_auto_by_default():
    assert TrainConfig().compile == "auto"
    assert load_config("digits-teacher", ["compile=true"]).compile is True
    assert load_config("digits-teacher", ["compile=auto"]).compile == "auto"
    with pytest.raises(ConfigError, match="compile must be true, false or auto"):
        load_config("digits-teacher", ["compile=sometimes"])


def test_auto_compiles_only_runs_long_enough_and_only_with_a_toolchain(monkeypatch):
    import shutil

    import torch

    from kdforge.engine import compilation

    cpu = torch.device("cpu")
    assert compilation.compile_decision(True, 5, cpu)[0] and not compilation.compile_decision(False, 10**6, cpu)[0]
    short, why = compilation.compile_decision("auto", compilation.AUTO_COMPILE_MIN_STEPS - 1, cpu)
    assert not short and "too few" in why
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    assert compilation.compile_decision("auto", compilation.AUTO_COMPILE_MIN_STEPS, cpu)[0]
    monkeypatch.setattr(shutil, "which", lambda name: None)
    compiled, why = compilation.compile_decision("auto", compilation.AUTO_COMPILE_MIN_STEPS, cpu)
    assert not compiled and "no C++ compiler" in why


def test_amp_auto_is_bf16_only_where_the_hardware_multiplies_bf16_natively(monkeypatch):
    import torch

    from kdforge.engine.run import amp_decision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_decision(True, cpu) == (True, "amp=true") and amp_decision(False, cuda) == (False, "amp=false")
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True, "amx_bf16": True}, raising=False)
    assert amp_decision("auto", cpu) == (True, "amp=auto: the CPU has AMX-BF16 tiles")
    # AVX512-BF16 alone (no tiles) or AVX2: not measured faster, so float32
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True, "amx_bf16": False},
                        raising=False)
    assert amp_decision("auto", cpu) == (False, "amp=auto: the CPU has no AMX-BF16 tiles")
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True}, raising=False)
    assert not amp_decision("auto", cpu)[0]
    for native in (True, False):  # a GPU: its own answer, emulation not counted
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n and not including_emulation)
        assert amp_decision("auto", cuda)[0] is native
    assert amp_decision("auto", torch.device("meta")) == (False, "amp=auto: no bf16 rule for meta")


def test_amp_auto_on_a_torch_without_the_capability_map_uses_its_amx_probe(monkeypatch):
    import types

    import torch

    from kdforge.engine.run import amp_decision

    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    for tiles in (True, False):
        monkeypatch.setattr(torch._C, "_cpu", types.SimpleNamespace(_is_amx_tile_supported=lambda t=tiles: t))
        assert amp_decision("auto", torch.device("cpu"))[0] is tiles
    monkeypatch.setattr(torch._C, "_cpu", types.SimpleNamespace())  # no probe at all: float32
    assert amp_decision("auto", torch.device("cpu")) == (False, "amp=auto: the CPU has no AMX-BF16 tiles")
    # a torch whose is_bf16_supported takes no argument
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert amp_decision("auto", torch.device("cuda"))[0] is True
