"""Every preset that names a source holds that source's values. The facts are written here as data, by the
file they come from, so a change to a preset that drifts from its source fails here."""

import pytest

from kdforge.config import load_config

PAIRS = ["resnet56-resnet20", "resnet110-resnet32", "resnet32x4-resnet8x4", "wrn_40_2-wrn_16_2", "wrn_40_2-wrn_40_1",
         "vgg13-vgg8", "vgg13-MobileNetV2", "ResNet50-MobileNetV2", "resnet32x4-ShuffleV1", "resnet32x4-ShuffleV2",
         "wrn_40_2-ShuffleV1"]
SMALL_LR = {"vgg13-MobileNetV2", "ResNet50-MobileNetV2", "resnet32x4-ShuffleV1", "resnet32x4-ShuffleV2",
            "wrn_40_2-ShuffleV1"}

# mdistiller configs/cifar100/dkd/<pair>.yaml: SOLVER (batch 64, 240 epochs, decay at 150/180/210 by 0.1, wd 5e-4,
# momentum 0.9; LR 0.01 for the MobileNet / ShuffleNet students, else 0.05) and DKD.BETA where set; the other DKD
# values are mdistiller/engine/cfg.py's defaults (CE 1, ALPHA 1, BETA 8, T 4, WARMUP 20)
DKD_BETA = {"resnet56-resnet20": 2.0, "resnet110-resnet32": 2.0, "vgg13-MobileNetV2": 6.0, "vgg13-vgg8": 6.0,
            "wrn_40_2-wrn_16_2": 6.0, "wrn_40_2-wrn_40_1": 6.0}
# mdistiller configs/cifar100/kd.yaml and cfg.py: KD.TEMPERATURE 4, CE_WEIGHT 0.1, KD_WEIGHT 0.9
# CKD's official code (the spec's table, section 1): lambda_CKD per pair, tau 1 (2 for the batch-32 pairs)
CKD_WEIGHT = {"resnet56-resnet20": 10.0, "resnet110-resnet32": 10.0, "wrn_40_2-wrn_40_1": 50.0,
              "vgg13-MobileNetV2": 50.0}
CKD_TAU = {"wrn_40_2-wrn_40_1": 2.0, "vgg13-MobileNetV2": 2.0}
CKD_BATCH_32 = {"wrn_40_2-wrn_40_1", "vgg13-MobileNetV2", "ResNet50-MobileNetV2", "resnet32x4-ShuffleV1",
                "wrn_40_2-ShuffleV1"}


def _grid_recipe(cfg, pair):
    assert (cfg.data.batch_size, cfg.optim.weight_decay, cfg.optim.momentum) == (64, 5e-4, 0.9)
    assert cfg.optim.lr == (0.01 if pair in SMALL_LR else 0.05)


@pytest.mark.parametrize("pair", PAIRS)
def test_cifar100_kd_and_dkd_presets_hold_mdistillers_values(pair):
    kd = load_config(f"cifar100-{pair}")
    _grid_recipe(kd, pair)
    assert (kd.epochs, kd.optim.schedule, kd.optim.milestones, kd.optim.gamma) == (240, "step", [150, 180, 210], 0.1)
    assert kd.method_args == {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}
    dkd = load_config(f"cifar100-dkd-{pair}")
    _grid_recipe(dkd, pair)
    assert dkd.method_args == {"ce_weight": 1.0, "alpha": 1.0, "beta": DKD_BETA.get(pair, 8.0), "temperature": 4.0,
                               "warmup_epochs": 20.0}


@pytest.mark.parametrize("pair", PAIRS)
def test_cifar100_ckd_presets_hold_the_official_values(pair):
    for prefix, epochs in (("cifar100-ckd", 480), ("cifar100-ckd240", 240)):
        cfg = load_config(f"{prefix}-{pair}")
        assert cfg.epochs == epochs
        assert cfg.method_args["ckd_weight"] == CKD_WEIGHT.get(pair, 100.0)
        assert cfg.method_args["temperature"] == CKD_TAU.get(pair, 1.0) and cfg.method_args["ce_weight"] == 1.0
        assert cfg.optim.lr == (0.01 if pair in SMALL_LR else 0.05)
    official = load_config(f"cifar100-ckd-{pair}")  # cosine to 0, no warm-up, the pair's batch
    assert (official.optim.schedule, official.optim.min_lr, official.optim.warmup_epochs) == ("cosine", 0.0, 0.0)
    assert official.data.batch_size == (32 if pair in CKD_BATCH_32 else 64)


# mdistiller configs/imagenet/{r34_r18,r50_mv1}/*.yaml: SOLVER batch 512, 100 epochs, LR 0.2 decayed by 0.1 at
# 30/60/90, wd 1e-4, momentum 0.9; kd.yaml KD.TEMPERATURE 1, CE 0.5, KD 0.5; dkd.yaml CE 1, BETA 0.5 (r34_r18) or
# 2.0 (r50_mv1), T 1, WARMUP 1, ALPHA unset there, so cfg.py's default 1.0
IMAGENET_DKD_BETA = {"r34-r18": 0.5, "r50-mv1": 2.0}


@pytest.mark.parametrize("pair", ["r34-r18", "r50-mv1"])
def test_imagenet_presets_hold_mdistillers_values(pair):
    for method in ("kd", "dkd"):
        cfg = load_config(f"imagenet-{method}-{pair}")
        assert (cfg.data.batch_size, cfg.epochs, cfg.optim.lr, cfg.optim.milestones, cfg.optim.gamma) == \
            (512, 100, 0.2, [30, 60, 90], 0.1)
        assert (cfg.optim.weight_decay, cfg.optim.momentum) == (1e-4, 0.9)
    assert load_config(f"imagenet-kd-{pair}").method_args == {"temperature": 1.0, "ce_weight": 0.5, "kd_weight": 0.5}
    assert load_config(f"imagenet-dkd-{pair}").method_args == {
        "ce_weight": 1.0, "alpha": 1.0, "beta": IMAGENET_DKD_BETA[pair], "temperature": 1.0, "warmup_epochs": 1.0}
    # CKD's official ImageNet recipe: batch 512, lr 0.2, 200 epochs cosine, wd 1e-4, lambda 10, tau 1
    ckd = load_config(f"imagenet-ckd-{pair}")
    assert (ckd.data.batch_size, ckd.optim.lr, ckd.epochs, ckd.optim.schedule, ckd.optim.weight_decay) == \
        (512, 0.2, 200, "cosine", 1e-4)
    assert ckd.method_args == {"ce_weight": 1.0, "ckd_weight": 10.0, "temperature": 1.0}


# logit-standardization-KD README log names (KD_TYPE,TEACHER,STUDENT,BASE_TEMPERATURE,KD_WEIGHT[,BETA]); pairs
# without a log take its command's defaults --base-temp 2 --kd-weight 9
KD_LOGIT_STD = {"vgg13-vgg8": (3.0, 9.0), "vgg13-MobileNetV2": (3.0, 9.0), "ResNet50-MobileNetV2": (3.0, 1.0)}
DKD_LOGIT_STD = {"vgg13-vgg8": (2.0, 15.0, 2.0), "wrn_40_2-wrn_40_1": (2.0, 12.0, 2.0), "wrn_40_2-wrn_16_2": (2.0, 12.0, 2.0),
                 "resnet56-resnet20": (3.0, 18.0, 2.0), "resnet110-resnet32": (2.0, 15.0, 2.0),
                 "vgg13-MobileNetV2": (3.0, 9.0, 2.0), "ResNet50-MobileNetV2": (2.0, 15.0, 2.0)}


@pytest.mark.parametrize("pair", PAIRS)
def test_logit_std_and_dist_presets_hold_their_official_values(pair):
    temperature, weight = KD_LOGIT_STD.get(pair, (2.0, 9.0))
    kd = load_config(f"cifar100-kd-logitstd-{pair}")
    _grid_recipe(kd, pair)
    assert kd.method_args == {"temperature": temperature, "ce_weight": 0.1, "kd_weight": weight, "logit_std": True}
    temperature, weight, beta = DKD_LOGIT_STD.get(pair, (2.0, 9.0, DKD_BETA.get(pair, 8.0)))
    dkd = load_config(f"cifar100-dkd-logitstd-{pair}")
    _grid_recipe(dkd, pair)
    assert dkd.method_args == {"ce_weight": 1.0, "alpha": weight, "beta": beta * weight, "temperature": temperature,
                               "warmup_epochs": 20.0, "logit_std": True}
    # DIST (image_classification_sota dist_cifar.yaml): DIST(1, 1, tau 4) x kd_loss_weight 2, CE 1
    dist = load_config(f"cifar100-dist-{pair}")
    _grid_recipe(dist, pair)
    assert dist.method_args == {"ce_weight": 1.0, "beta": 2.0, "gamma": 2.0, "tau": 4.0}


@pytest.mark.parametrize("pair", ["r34-r18", "r50-mv1"])
def test_imagenet_dist_preset_holds_the_official_values(pair):
    # resnet_dist.yaml: DIST(1, 1, tau 1) x 2, CE 1; 8 GPUs x batch 32, lr 0.1, decay 0.1 every 30 of 100 epochs
    cfg = load_config(f"imagenet-dist-{pair}")
    assert cfg.method_args == {"ce_weight": 1.0, "beta": 2.0, "gamma": 2.0, "tau": 1.0}
    assert (cfg.data.batch_size, cfg.optim.lr, cfg.epochs, cfg.optim.milestones, cfg.optim.weight_decay) == \
        (256, 0.1, 100, [30, 60, 90], 1e-4)
    if pair == "r34-r18":  # README: --logit-stand --base-temp 2 --kd-weight 9 on configs/imagenet/r34_r18/kd.yaml
        assert load_config("imagenet-kd-logitstd-r34-r18").method_args == {
            "temperature": 2.0, "ce_weight": 0.5, "kd_weight": 9.0, "logit_std": True}


def test_reviewkd_preset_holds_mdistillers_values():
    cfg = load_config("cifar100-reviewkd-resnet32x4-resnet8x4")
    _grid_recipe(cfg, "resnet32x4-resnet8x4")
    assert cfg.method_args == {"ce_weight": 1.0, "reviewkd_weight": 5.0, "warmup_epochs": 20.0}
