"""Pretrained backbones (OXNET.BACKBONE.PRETRAINED): torchvision, timm and torchxrayvision ResNets converted
to detectron2's ResNet give the source network's features; bad files and settings are clear errors."""

import os

import pytest
import torch
import torchvision
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from torch import nn

from oxnet.config import add_oxnet_config
from oxnet.modeling.pretrained import (
    TORCHVISION_FILES,
    XRV_FILES,
    PretrainedWeightsError,
    config_overrides,
    load_pretrained_backbone,
    pixel_stats,
)
from oxnet.testing import REPO_ROOT, tiny_cfg

SIZE = 64
IMAGENET_MEAN, IMAGENET_STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


@pytest.fixture(autouse=True)
def _caches(tmp_path, monkeypatch):
    """Empty caches under tmp_path: nothing is read from (or written to) the real ones."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", None)


def source_resnet(arch, in_channels=3, num_classes=1000, seed=0):
    """A randomly initialised torchvision ResNet in eval mode with random batch-norm statistics and
    affines (so that their conversion to FrozenBN matters)."""
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    if in_channels == 1:  # torchxrayvision's patch for single-channel input
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
            m.num_batches_tracked.fill_(c)
    return net.eval()


def source_features(net, x):
    """The source network's layer1..layer4 outputs."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    out = []
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        x = layer(x)
        out.append(x)
    return out


def model_cfg(config, depth, channels=3, kind=None):
    """A shipped config, shrunk for the CPU (64 px, small FPN and head) at ``depth`` with res2..res5 out."""
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", config))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64 if depth < 50 else 256
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.RETINANET.NUM_CONVS = 1
    cfg.MODEL.RETINANET.NUM_CLASSES = 3
    cfg.OXNET.INPUT_SIZE = SIZE
    if channels == 1:
        cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = pixel_stats(kind, 1)
    return cfg


def grey_image(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (SIZE, SIZE), generator=g).float()


def assert_same_features(cfg, spec, net, source_input, grey):
    """Load ``spec`` through the training code path into the model ``cfg`` builds and compare its
    res2..res5 on the mapper's image (grey replicated to 3 channels, 0..255) with ``net``'s layer1..4."""
    model = build_model(cfg).eval()
    load_pretrained_backbone(model, cfg, spec)
    with torch.no_grad():
        images = model.preprocess_image([{"image": grey.expand(3, SIZE, SIZE).clone()}])
        assert images.tensor.shape[-2:] == (SIZE, SIZE)
        ours = model.backbone.bottom_up(images.tensor)
        theirs = source_features(net, source_input[None])
    for level, expected in zip(("res2", "res3", "res4", "res5"), theirs):
        got = ours[level]
        assert got.shape == expected.shape, level
        scale = max(1.0, expected.abs().max().item())
        err = (got - expected).abs().max().item()
        assert err <= 1e-5 * scale, f"{level}: max difference {err} (scale {scale})"


def save(state, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(state, path)
    return str(path)


def imagenet_input(grey):
    return (grey[None] / 255 - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]


def xrv_input(grey):
    return ((2 * grey / 255 - 1) * 1024)[None]  # torchxrayvision.datasets.normalize(img, 255)


def test_torchvision_resnet18_by_name_matches_source():
    net = source_resnet("resnet18")
    save(net.state_dict(), os.path.join(torch.hub.get_dir(), "checkpoints", TORCHVISION_FILES["resnet18"]))
    grey = grey_image()
    assert_same_features(
        model_cfg("oxnet_R101_imagenet.yaml", 18), "torchvision://resnet18", net, imagenet_input(grey), grey
    )


def test_torchvision_resnet50_file_matches_source(tmp_path):
    net = source_resnet("resnet50", seed=1)
    path = save(net.state_dict(), tmp_path / "resnet50-0676ba61.pth")
    grey = grey_image(2)
    assert_same_features(model_cfg("retinanet_R101_imagenet.yaml", 50), path, net, imagenet_input(grey), grey)


def test_timm_safetensors_in_hub_cache_matches_source(tmp_path):
    from safetensors.torch import save_file

    net = source_resnet("resnet50", seed=2)
    # timm's ResNet names its modules as torchvision does; its released files carry no num_batches_tracked
    state = {k: v.contiguous() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    hub = tmp_path / "home" / ".cache" / "huggingface" / "hub"
    snapshot = hub / "models--timm--resnet50.a1_in1k" / "snapshots" / "0"
    os.makedirs(snapshot)
    save_file(state, str(snapshot / "model.safetensors"))
    grey = grey_image(3)
    assert_same_features(
        model_cfg("oxnet_R101_imagenet.yaml", 50), "timm://resnet50.a1_in1k", net, imagenet_input(grey), grey
    )


def test_stem_1_to_1_xrv_by_name_on_grey_input():
    net = source_resnet("resnet50", in_channels=1, num_classes=18, seed=3)
    save(
        net.state_dict(),
        os.path.join(
            os.path.expanduser("~"), ".torchxrayvision", "models_data", XRV_FILES["resnet50-res512-all"]
        ),
    )
    grey = grey_image(4)
    cfg = model_cfg("oxnet_R50_xrv.yaml", 50, channels=1, kind="xrv")
    assert cfg.MODEL.PIXEL_MEAN == [127.5]
    assert_same_features(cfg, "xrv://resnet50-res512-all", net, xrv_input(grey), grey)


def test_stem_3_to_1_imagenet_summed_over_channels(tmp_path):
    net = source_resnet("resnet18", seed=4)
    path = save(net.state_dict(), tmp_path / "r18.pth")
    grey = grey_image(5)
    cfg = model_cfg("oxnet_R101_imagenet.yaml", 18, channels=1, kind="imagenet")
    # the 1-channel model's normalization (the mean of ImageNet's three), the same on every channel
    x = ((grey / 255 - IMAGENET_MEAN.mean()) / IMAGENET_STD.mean()).expand(3, SIZE, SIZE)
    assert_same_features(cfg, path, net, x, grey)


def test_stem_1_to_3_xrv_file_replicated(tmp_path):
    net = source_resnet("resnet50", in_channels=1, num_classes=18, seed=5)
    path = save(net.state_dict(), tmp_path / "pc-nih-rsna-siim-vin-resnet50-test512-e400-state.pt")
    grey = grey_image(6)
    cfg = model_cfg("oxnet_R50_xrv.yaml", 50)  # the shipped config: 3 channels, [-1024, 1024]
    assert len(cfg.MODEL.PIXEL_MEAN) == 3
    assert_same_features(cfg, path, net, xrv_input(grey), grey)


def _tiny_r18_cfg(**overrides):
    cfg = model_cfg("oxnet_R101_imagenet.yaml", 18)
    for k, v in overrides.items():
        node = cfg
        *parents, key = k.split(".")
        for p in parents:
            node = node[p]
        node[key] = v
    return cfg


def test_truncated_and_wrong_files_name_the_file(tmp_path):
    path = save(source_resnet("resnet18").state_dict(), tmp_path / "r18.pth")
    with open(path, "rb") as f:
        data = f.read()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    model = build_model(_tiny_r18_cfg())
    with pytest.raises(PretrainedWeightsError, match=r"cannot read .*truncated\.pth.*truncated"):
        load_pretrained_backbone(model, _tiny_r18_cfg(), str(truncated))
    other = save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(
        PretrainedWeightsError,
        match=r"other\.pth is not a torchvision-layout ResNet: "
        r"no conv1\.weight.*encoder\.weight",
    ):
        load_pretrained_backbone(model, _tiny_r18_cfg(), other)
    detector = save({"model": {"backbone.bottom_up.stem.conv1.weight": torch.zeros(1)}}, tmp_path / "d2.pth")
    with pytest.raises(
        PretrainedWeightsError, match=r"d2\.pth is a detectron2 detector checkpoint.*MODEL\.WEIGHTS"
    ):
        load_pretrained_backbone(model, _tiny_r18_cfg(), detector)
    with pytest.raises(PretrainedWeightsError, match=r"no such file .*absent\.pth"):
        load_pretrained_backbone(model, _tiny_r18_cfg(), str(tmp_path / "absent.pth"))


def test_depth_mismatch_names_file_and_depths(tmp_path):
    path = save(source_resnet("resnet50").state_dict(), tmp_path / "resnet50.pth")
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", "oxnet_R101_imagenet.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    before = model.backbone.bottom_up.stem.conv1.weight.clone()
    with pytest.raises(
        PretrainedWeightsError,
        match=r"resnet50\.pth.*holds a ResNet-50 but "
        r"MODEL\.RESNETS\.DEPTH is 101",
    ):
        load_pretrained_backbone(model, cfg, path)
    assert torch.equal(model.backbone.bottom_up.stem.conv1.weight, before)  # nothing loaded
    r18 = save(source_resnet("resnet18").state_dict(), tmp_path / "resnet18.pth")
    cfg50 = model_cfg("oxnet_R101_imagenet.yaml", 50)
    with pytest.raises(
        PretrainedWeightsError, match=r"resnet18\.pth.*holds a ResNet-18 but MODEL\.RESNETS\.DEPTH is 50"
    ):
        load_pretrained_backbone(build_model(cfg50), cfg50, r18)


def test_config_that_does_not_fit_the_weights(tmp_path):
    xrv = save(source_resnet("resnet18", in_channels=1, num_classes=18).state_dict(), tmp_path / "xrv18.pt")
    cfg = _tiny_r18_cfg()  # ImageNet normalization: a 1-channel conv1 (auto: torchxrayvision's) refuses it
    with pytest.raises(
        PretrainedWeightsError,
        match=r"xrv18\.pt.*xrv normalization: MODEL\.PIXEL_MEAN "
        r"\[127\.5, 127\.5, 127\.5\]",
    ):
        load_pretrained_backbone(build_model(cfg), cfg, xrv)
    cfg.OXNET.BACKBONE.PRETRAINED_INPUT = "none"  # the user's own normalization
    load_pretrained_backbone(build_model(cfg), cfg, xrv)
    imagenet = save(source_resnet("resnet18").state_dict(), tmp_path / "r18.pth")
    gn = _tiny_r18_cfg(**{"MODEL.RESNETS.NORM": "GN", "MODEL.RESNETS.STRIDE_IN_1X1": True})
    with pytest.raises(
        PretrainedWeightsError,
        match=r"NORM is 'GN'.*STRIDE_IN_1X1 is True.*need: OXNET\."
        r"BACKBONE\.PRETRAINED .*MODEL\.RESNETS\.NORM FrozenBN",
    ):
        load_pretrained_backbone(build_model(gn), gn, imagenet)


def test_unknown_scheme_and_missing_cached_file():
    cfg = _tiny_r18_cfg()
    model = build_model(cfg)
    with pytest.raises(PretrainedWeightsError, match=r"'hf://resnet50'.*unknown scheme 'hf'.*torchvision://"):
        load_pretrained_backbone(model, cfg, "hf://resnet50")
    with pytest.raises(PretrainedWeightsError, match=r"unknown torchvision name 'resnet200'"):
        load_pretrained_backbone(model, cfg, "torchvision://resnet200")
    want = os.path.join(torch.hub.get_dir(), "checkpoints", "resnet18-f37072fd.pth")
    with pytest.raises(PretrainedWeightsError) as e:
        load_pretrained_backbone(model, cfg, "torchvision://resnet18")
    message = str(e.value)
    assert "OXNET.BACKBONE.PRETRAINED" in message and want in message
    assert "python -m oxnet.modeling.pretrained fetch torchvision://resnet18" in message
    assert not os.path.exists(want)  # nothing was downloaded


def test_training_starts_from_pretrained_and_resumes_without_it(tmp_path):
    """The trainer loads the weights into student and teacher (here a 1-channel model from 3-channel
    weights, set by the overrides the bench accepts); resuming reads the run's checkpoint only."""
    from detectron2.data import DatasetCatalog

    from oxnet.bench.__main__ import check_overrides
    from oxnet.data import register_omni_coco
    from oxnet.engine import OXnetTrainer
    from oxnet.engine.hooks import unwrap
    from oxnet.modeling.pretrained import convert_resnet, read_state_dict
    from oxnet.testing import write_toy_dataset

    weights = save(source_resnet("resnet18").state_dict(), tmp_path / "r18.pth")
    overrides = config_overrides(weights, channels=1)
    check_overrides(overrides)  # python -m oxnet.bench ... KEY VALUE accepts them
    json_file = write_toy_dataset(str(tmp_path / "data"), size=SIZE)
    if "pretrained_toy" not in DatasetCatalog.list():
        register_omni_coco("pretrained_toy", json_file, str(tmp_path / "data" / "images"))
    cfg = tiny_cfg("oxnet", size=SIZE)
    cfg.merge_from_list(overrides)
    cfg.DATASETS.TRAIN = ("pretrained_toy",)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.OXNET.BATCH.FULL, cfg.OXNET.BATCH.WEAK, cfg.OXNET.BATCH.UNLABELED = 1, 1, 1
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.CHECKPOINT_PERIOD = 2, (), 0, 1
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    trainer = OXnetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    expected = convert_resnet(read_state_dict(weights), in_channels=1)
    resnet = unwrap(trainer.model).backbone.bottom_up
    assert resnet.stem.conv1.weight.shape[1] == 1
    for k, v in resnet.state_dict().items():
        assert torch.equal(v, expected[k]), k
    teacher = trainer.teacher_hook.teacher.state_dict()
    assert torch.equal(teacher["backbone.bottom_up.res4.1.conv2.weight"], expected["res4.1.conv2.weight"])
    trainer.train()  # the model takes the first of the three grey channels
    trained = {k: v.clone() for k, v in unwrap(trainer.model).state_dict().items()}
    assert not torch.equal(trained["backbone.bottom_up.res5.1.conv2.weight"], expected["res5.1.conv2.weight"])

    os.remove(weights)  # a resumed run does not read the pretrained file
    resumed = OXnetTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2
    for k, v in unwrap(resumed.model).state_dict().items():
        assert torch.equal(v, trained[k]), k


@pytest.mark.parametrize(
    "config,method,depth,spec,kind",
    [
        ("oxnet_R101_imagenet.yaml", "oxnet", 101, "torchvision://resnet101", "imagenet"),
        ("retinanet_R101_imagenet.yaml", "retinanet", 101, "torchvision://resnet101", "imagenet"),
        ("oxnet_R50_xrv.yaml", "oxnet", 50, "xrv://resnet50-res512-all", "xrv"),
        ("retinanet_R50_xrv.yaml", "retinanet", 50, "xrv://resnet50-res512-all", "xrv"),
    ],
)
def test_shipped_configs_describe_their_weights(config, method, depth, spec, kind):
    """Each config is its base's setting (oxnet_R101 / retinanet_R101) plus the overrides its weights need."""
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", config))
    assert (method, depth, spec) == (cfg.OXNET.METHOD, cfg.MODEL.RESNETS.DEPTH, cfg.OXNET.BACKBONE.PRETRAINED)
    assert cfg.OXNET.BATCH.FULL == 4 and cfg.OXNET.INPUT_SIZE == 512  # the paper's setting kept
    expected = config_overrides(spec)
    merged = cfg.clone()
    merged.merge_from_list(expected)
    assert merged == cfg, f"{config} lacks some of {expected}"
    assert pixel_stats(kind, 3) == (list(cfg.MODEL.PIXEL_MEAN), list(cfg.MODEL.PIXEL_STD))


def test_command_line_prints_overrides_and_names_missing_files(capsys):
    from oxnet.modeling.pretrained import main

    assert main(["overrides", "xrv://resnet50-res512-all", "--channels", "1"]) == 0
    out = capsys.readouterr().out.split()
    assert out[:2] == ["OXNET.BACKBONE.PRETRAINED", "xrv://resnet50-res512-all"]
    assert out[out.index("MODEL.PIXEL_MEAN") + 1] == "'[127.5]'"
    assert main(["where", "xrv://resnet50-res512-all"]) == 2
    err = capsys.readouterr().err
    want = os.path.join(
        os.path.expanduser("~"), ".torchxrayvision", "models_data", XRV_FILES["resnet50-res512-all"]
    )
    assert want in err and "fetch xrv://resnet50-res512-all" in err
    assert main(["fetch", "foo://bar"]) == 2
    assert "unknown scheme 'foo'" in capsys.readouterr().err
