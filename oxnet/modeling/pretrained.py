"""Pretrained ResNet backbones (``OXNET.BACKBONE.PRETRAINED``): torchvision and timm ImageNet weights and
torchxrayvision's chest X-ray ResNet-50, converted to detectron2's ResNet when training starts.

The setting names a local file (a torchvision-layout ResNet state dict, ``.pth``/``.pt`` or
``.safetensors``) or a name looked up in the cache where its library keeps it:

* ``torchvision://resnet18|34|50|101|152``: ``torch.hub.get_dir()/checkpoints/resnet101-63fe2227.pth``
  (``$TORCH_HOME``; ImageNet V1 weights, or V2 when only those are there);
* ``timm://resnet50.a1_in1k`` (any timm ResNet with the plain 7x7 stem): the Hugging Face cache
  timm fills (``models--timm--NAME/snapshots/*/model.safetensors``), else
  ``torch.hub.get_dir()/checkpoints/timm/NAME.safetensors``;
* ``xrv://resnet50-res512-all``: ``~/.torchxrayvision/models_data/`` (torchxrayvision's cache),
  file ``pc-nih-rsna-siim-vin-resnet50-test512-e400-state.pt``.

Nothing is downloaded when training; ``python -m oxnet.modeling.pretrained fetch NAME`` downloads a
name into that cache on a machine with internet, ``... overrides NAME`` prints the config overrides
the weights need.

torchvision's, timm's (plain ResNets) and torchxrayvision's ResNets share one layout (``conv1``,
``bn1``, ``layer1``..``layer4`` of blocks with ``convK``/``bnK`` and ``downsample``, ``fc``).
:func:`convert_resnet` renames it to detectron2's as detectron2's
``tools/convert-torchvision-to-d2.py`` does: ``conv1``/``bn1`` to the stem, ``layerN`` to
``res{N+1}``, ``bnK`` to ``convK.norm``, ``downsample.0``/``.1`` to ``shortcut``/``shortcut.norm``;
``fc`` is dropped. These networks put the stride in the 3x3 convolution
(``MODEL.RESNETS.STRIDE_IN_1X1 False``) and their batch norms become detectron2's ``FrozenBN``
(``MODEL.RESNETS.NORM FrozenBN``); FPN and heads keep their own norm (GroupNorm).

The stem follows the model's input channels (``len(MODEL.PIXEL_MEAN)``): weights with as many input
channels load as they are; 3-channel weights on 1-channel input are summed over channels; 1-channel
weights on 3-channel input are replicated and divided by 3 (the same network on the grey images the
project replicates to three channels). The input must be normalized as the weights were trained
(:data:`INPUT_NORMALIZATION`), which ``MODEL.PIXEL_MEAN``/``PIXEL_STD`` say; training refuses other
values unless ``OXNET.BACKBONE.PRETRAINED_INPUT`` is ``none``.
"""

import argparse
import glob
import logging
import os
import sys

import torch

__all__ = [
    "PretrainedWeightsError",
    "INPUT_NORMALIZATION",
    "resolve",
    "fetch_command",
    "read_state_dict",
    "resnet_depth",
    "convert_resnet",
    "pixel_stats",
    "config_overrides",
    "load_pretrained_backbone",
]

logger = logging.getLogger(__name__)

SETTING = "OXNET.BACKBONE.PRETRAINED"
SCHEMES = ("torchvision", "timm", "xrv")

#: torchvision's ImageNet files (``IMAGENET1K_V1``), as its hub cache names them.
TORCHVISION_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
    "resnet152": "resnet152-394f9c45.pth",
}
TORCHVISION_URL = "https://download.pytorch.org/models/{}"
#: torchxrayvision's ResNet weights (``xrv.models.ResNet(weights=NAME)``) and their files.
XRV_FILES = {"resnet50-res512-all": "pc-nih-rsna-siim-vin-resnet50-test512-e400-state.pt"}
XRV_URL = "https://github.com/mlmed/torchxrayvision/releases/download/v1/{}"
TIMM_URL = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"

#: How each source normalized its training inputs, as ``(mean, std)`` on 0..255 grey levels for 3 and
#: 1 input channels. ImageNet: torchvision's RGB mean/std; on one channel their averages (the summed
#: stem then sees a grey image normalized as the mean of the three channels).
#: torchxrayvision: ``(2 x / 255 - 1) * 1024``, i.e. mean 127.5 and std 255 / 2048 on every channel.
INPUT_NORMALIZATION = {
    "imagenet": {3: ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375]), 1: ([114.495], [57.63])},
    "xrv": {3: ([127.5] * 3, [255.0 / 2048] * 3), 1: ([127.5], [255.0 / 2048])},
}
INPUT_KINDS = ("auto", "imagenet", "xrv", "none")

#: (blocks per stage, bottleneck) -> depth
_DEPTHS = {
    ((2, 2, 2, 2), False): 18,
    ((3, 4, 6, 3), False): 34,
    ((3, 4, 6, 3), True): 50,
    ((3, 4, 23, 3), True): 101,
    ((3, 8, 36, 3), True): 152,
}


class PretrainedWeightsError(ValueError):
    """Pretrained backbone weights that are missing, unreadable or do not fit the configured model."""


def _hub_checkpoints():
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _hf_cache():
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
    return os.path.join(home, "hub")


def _xrv_folder():
    return os.path.join(os.path.expanduser("~"), ".torchxrayvision", "models_data")


def _split(spec):
    spec = str(spec)
    if "://" not in spec:
        return None, spec
    scheme, name = spec.split("://", 1)
    if scheme not in SCHEMES:
        raise PretrainedWeightsError(
            f"{SETTING} {spec!r}: unknown scheme {scheme!r}; use a file path or one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
            + " (torchvision://resnet101, timm://resnet50.a1_in1k, "
            "xrv://resnet50-res512-all)"
        )
    known = {"torchvision": TORCHVISION_FILES, "xrv": XRV_FILES}.get(scheme)
    if known is not None and name not in known:
        raise PretrainedWeightsError(
            f"{SETTING} {spec!r}: unknown {scheme} name {name!r}; known: {', '.join(sorted(known))}"
        )
    if scheme == "timm" and (not name or "/" in name or not name.startswith("resnet")):
        raise PretrainedWeightsError(
            f"{SETTING} {spec!r}: expected a timm ResNet name such as timm://resnet50.a1_in1k"
        )
    return scheme, name


def _candidates(scheme, name):
    """Where a name is looked for, first the file its fetch command writes."""
    if scheme == "torchvision":
        first = os.path.join(_hub_checkpoints(), TORCHVISION_FILES[name])
        return [first] + sorted(glob.glob(os.path.join(_hub_checkpoints(), f"{name}-*.pth")))
    if scheme == "xrv":
        return [os.path.join(_xrv_folder(), XRV_FILES[name])]
    own = os.path.join(_hub_checkpoints(), "timm", f"{name}.safetensors")
    snapshots = os.path.join(_hf_cache(), f"models--timm--{name}", "snapshots", "*")
    return [own] + sorted(
        glob.glob(os.path.join(snapshots, "model.safetensors"))
        + glob.glob(os.path.join(snapshots, "pytorch_model.bin"))
    )


def _url(scheme, name):
    return {
        "torchvision": lambda: TORCHVISION_URL.format(TORCHVISION_FILES[name]),
        "xrv": lambda: XRV_URL.format(XRV_FILES[name]),
        "timm": lambda: TIMM_URL.format(name),
    }[scheme]()


def fetch_command(spec):
    """The command that downloads ``spec`` (a ``scheme://name``) into the cache it is looked up in."""
    return f"python -m oxnet.modeling.pretrained fetch {spec}"


def resolve(spec):
    """``(path, scheme)`` of a ``OXNET.BACKBONE.PRETRAINED`` value (``scheme`` is None for a path).

    Raises:
        PretrainedWeightsError: an unknown scheme or name, or a file that is not there (the message
            names the setting, the file looked for and the command that fetches it).
    """
    scheme, name = _split(spec)
    if scheme is None:
        path = os.path.expanduser(name)
        if not os.path.isfile(path):
            raise PretrainedWeightsError(f"{SETTING} {spec!r}: no such file {os.path.abspath(path)}")
        return path, None
    candidates = _candidates(scheme, name)
    for path in candidates:
        if os.path.isfile(path):
            return path, scheme
    raise PretrainedWeightsError(
        f"{SETTING} {spec!r}: the weights are not on this machine (looked for {candidates[0]}"
        + (f" and {len(candidates) - 1} more" if len(candidates) > 1 else "")
        + "). Nothing is downloaded "
        f"when training; on a machine with internet run `{fetch_command(spec)}` (it writes "
        f"{candidates[0]}) and copy the file to the same place here, or name the file in {SETTING}"
    )


def fetch(spec):
    """Download ``spec`` (``scheme://name``) into the file :func:`resolve` looks for first; returns it."""
    scheme, name = _split(spec)
    if scheme is None:
        raise PretrainedWeightsError(
            f"fetch: {spec!r} is a path; give scheme://name, e.g. torchvision://resnet101"
        )
    path = _candidates(scheme, name)[0]
    if os.path.isfile(path):
        print(f"{path} is already there")
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    url = _url(scheme, name)
    print(f"Downloading {url} to {path}")
    torch.hub.download_url_to_file(url, path, progress=True)
    read_state_dict(path)  # refuse a file that is not a state dict before it is used
    return path


def read_state_dict(path):
    """The tensors of a ResNet weights file (``.safetensors``, or a ``.pth``/``.pt``/``.bin`` state dict
    read with ``torch.load(weights_only=True)``), unwrapped from ``state_dict``/``model`` entries and
    ``module.``/``model.`` prefixes.

    Raises:
        PretrainedWeightsError: the file cannot be read (truncated, not a weights file, or a pickle
            that holds more than tensors) or holds no tensors.
    """
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            data = load_file(path, device="cpu")
        elif str(path).endswith(".pkl"):
            raise PretrainedWeightsError(
                f"{path}: a detectron2 .pkl is a detector checkpoint; name it as "
                "MODEL.WEIGHTS, not as " + SETTING
            )
        else:
            from oxnet.utils.safe_load import load_weights_file

            data = load_weights_file(path)
    except PretrainedWeightsError:
        raise
    except Exception as e:  # truncated zip, bad header, refused pickle: name the file and the cause
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PretrainedWeightsError(
            f"{SETTING}: cannot read {path} as a weights file (truncated, or not "
            f"a state dict): {type(e).__name__}: {first}"
        ) from e
    for key in ("state_dict", "model", "model_state"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not any(torch.is_tensor(v) for v in data.values()):
        raise PretrainedWeightsError(
            f"{SETTING}: {path} holds no state dict of tensors (a {type(data).__name__})"
        )
    state = {str(k): v for k, v in data.items() if torch.is_tensor(v)}
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def resnet_depth(state, path):
    """The depth (18, 34, 50, 101, 152) of a torchvision-layout ResNet state dict.

    Raises:
        PretrainedWeightsError: the file holds another network (a detectron2 checkpoint, a deep-stem
            timm variant, no ResNet stages) or a block count of no standard depth.
    """
    if any(k.startswith("backbone.bottom_up.") for k in state):
        raise PretrainedWeightsError(
            f"{SETTING}: {path} is a detectron2 detector checkpoint; name it as "
            "MODEL.WEIGHTS, not as " + SETTING
        )
    if "conv1.weight" not in state:
        deep = any(k.startswith("conv1.0.") for k in state)
        shown = ", ".join(sorted(state)[:5])
        raise PretrainedWeightsError(
            f"{SETTING}: {path} is not a torchvision-layout ResNet: no conv1.weight"
            + (
                " (it has a deep stem, conv1.0..., as timm's resnet*d/*t variants; only the plain 7x7 stem "
                "is supported)"
                if deep
                else f" (its first keys: {shown})"
            )
        )
    counts = []
    for stage in range(1, 5):
        blocks = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{stage}.")}
        if not blocks:
            raise PretrainedWeightsError(
                f"{SETTING}: {path} is not a torchvision-layout ResNet: no "
                f"layer{stage} (stages layer1..layer4 expected)"
            )
        counts.append(max(blocks) + 1)
    bottleneck = "layer1.0.conv3.weight" in state
    depth = _DEPTHS.get((tuple(counts), bottleneck))
    if depth is None:
        raise PretrainedWeightsError(
            f"{SETTING}: {path} is a ResNet with {counts} "
            f"{'bottleneck' if bottleneck else 'basic'} blocks per stage, "
            "which is not ResNet-18/34/50/101/152"
        )
    return depth


def _d2_key(key):
    """detectron2's name of a torchvision ResNet key (tools/convert-torchvision-to-d2.py's mapping)."""
    if "layer" not in key:
        key = "stem." + key
    for t in (1, 2, 3, 4):
        key = key.replace(f"layer{t}", f"res{t + 1}")
    for t in (1, 2, 3):
        key = key.replace(f"bn{t}", f"conv{t}.norm")
    return key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def _adapt_stem(weight, channels, path):
    have = weight.shape[1]
    if have == channels:
        return weight
    if have == 3 and channels == 1:
        return weight.sum(dim=1, keepdim=True)
    if have == 1 and channels == 3:
        return weight.repeat(1, 3, 1, 1) / 3
    raise PretrainedWeightsError(
        f"{SETTING}: {path} has a {have}-channel conv1 and the model takes "
        f"{channels} channels (len(MODEL.PIXEL_MEAN)); only 1 and 3 are converted"
    )


def convert_resnet(state, in_channels=3, path="the weights"):
    """detectron2 ResNet weights (keys of ``backbone.bottom_up``) from a torchvision-layout state dict:
    keys renamed, ``fc`` and ``num_batches_tracked`` dropped, the stem's ``conv1`` adapted to
    ``in_channels`` (summed over 3 channels for 1, replicated / 3 for 3 from 1)."""
    out = {}
    for key, value in state.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        if key == "conv1.weight":
            value = _adapt_stem(value, in_channels, path)
        out[_d2_key(key)] = value
    return out


def pixel_stats(kind, channels):
    """``(MODEL.PIXEL_MEAN, MODEL.PIXEL_STD)`` for weights trained with the normalization ``kind``
    ("imagenet" or "xrv") on a model with ``channels`` (1 or 3) input channels."""
    if kind not in INPUT_NORMALIZATION:
        raise ValueError(f"unknown input normalization {kind!r}; one of {sorted(INPUT_NORMALIZATION)}")
    if channels not in INPUT_NORMALIZATION[kind]:
        raise ValueError(f"pretrained stems take 1 or 3 input channels, not {channels}")
    mean, std = INPUT_NORMALIZATION[kind][channels]
    return list(mean), list(std)


def _input_kind(cfg, scheme, state):
    kind = cfg.OXNET.BACKBONE.PRETRAINED_INPUT
    if kind not in INPUT_KINDS:
        raise PretrainedWeightsError(
            f"OXNET.BACKBONE.PRETRAINED_INPUT must be one of {INPUT_KINDS}, got {kind!r}"
        )
    if kind != "auto":
        return kind
    if scheme == "xrv" or (scheme is None and state["conv1.weight"].shape[1] == 1):
        return "xrv"
    return "imagenet"


def config_overrides(spec, channels=3, kind=None):
    """The ``KEY VALUE`` config overrides that start a model from ``spec`` (for ``train_net.py`` or the
    trailing overrides of ``python -m oxnet.bench``): the setting itself, FrozenBN, the stride in the
    3x3 convolution and the input normalization (``kind``: from the scheme when None)."""
    scheme, _ = _split(spec)
    kind = kind or ("xrv" if scheme == "xrv" else "imagenet")
    mean, std = pixel_stats(kind, channels)
    fmt = lambda values: "[" + ",".join(repr(float(v)) for v in values) + "]"  # noqa: E731
    return [
        SETTING,
        str(spec),
        "MODEL.RESNETS.NORM",
        "FrozenBN",
        "MODEL.RESNETS.STRIDE_IN_1X1",
        "False",
        "MODEL.PIXEL_MEAN",
        fmt(mean),
        "MODEL.PIXEL_STD",
        fmt(std),
    ]


def _check_config(cfg, spec, path, depth, kind, channels):
    res = cfg.MODEL.RESNETS
    problems = []
    if depth != res.DEPTH:
        problems.append(f"the file holds a ResNet-{depth} but MODEL.RESNETS.DEPTH is {res.DEPTH}")
    if res.NORM != "FrozenBN" and not (res.NORM == "BN" and cfg.OXNET.BACKBONE.FREEZE_BN_STATS):
        problems.append(
            f"MODEL.RESNETS.NORM is {res.NORM!r}; the weights' batch norms load as 'FrozenBN' (or as "
            "'BN' with OXNET.BACKBONE.FREEZE_BN_STATS True: statistics frozen, affine trained)"
        )
    if res.STRIDE_IN_1X1:
        problems.append(
            "MODEL.RESNETS.STRIDE_IN_1X1 is True; these ResNets stride in the 3x3 convolution (False)"
        )
    if res.NUM_GROUPS != 1 or res.WIDTH_PER_GROUP != 64 or any(res.DEFORM_ON_PER_STAGE):
        problems.append(
            "MODEL.RESNETS describes a ResNeXt or deformable ResNet (NUM_GROUPS 1, "
            "WIDTH_PER_GROUP 64 and no DEFORM_ON_PER_STAGE needed)"
        )
    if depth in (18, 34) and res.RES2_OUT_CHANNELS != 64:
        problems.append(
            f"MODEL.RESNETS.RES2_OUT_CHANNELS is {res.RES2_OUT_CHANNELS}; ResNet-{depth} needs 64"
        )
    if kind != "none":
        want_mean, want_std = pixel_stats(kind, channels)
        have_mean = [float(v) for v in cfg.MODEL.PIXEL_MEAN]
        have_std = [float(v) for v in cfg.MODEL.PIXEL_STD]

        def close(a, b):
            return len(a) == len(b) and all(abs(x - y) <= 1e-4 * max(1.0, abs(y)) for x, y in zip(a, b))

        if not (close(have_mean, want_mean) and close(have_std, want_std)):
            problems.append(
                f"the weights were trained on {kind} normalization: MODEL.PIXEL_MEAN {want_mean} "
                f"and MODEL.PIXEL_STD {want_std} for {channels} channel(s), the config has "
                f"{have_mean} and {have_std} (OXNET.BACKBONE.PRETRAINED_INPUT none skips this "
                "check)"
            )
    if problems:
        raise PretrainedWeightsError(
            f"{SETTING} {spec!r} ({path}) does not fit the config: "
            + "; ".join(problems)
            + ". The overrides these weights need: "
            + " ".join(config_overrides(spec, channels, kind if kind != "none" else None))
        )


def load_pretrained_backbone(model, cfg, spec=None):
    """Load ``OXNET.BACKBONE.PRETRAINED`` (or ``spec``) into the detectron2 ResNet of ``model``
    (``model.backbone.bottom_up``, or a bare ResNet backbone); returns a short description.

    Raises:
        PretrainedWeightsError: the file is missing or unreadable, holds another network or depth, or
            the config does not describe the network it holds (norm, stride, input normalization).
    """
    from detectron2.modeling.backbone import ResNet

    spec = spec or cfg.OXNET.BACKBONE.PRETRAINED
    model = getattr(model, "module", model)
    backbone = getattr(model, "backbone", model)
    resnet = getattr(backbone, "bottom_up", backbone)
    if not isinstance(resnet, ResNet):
        raise PretrainedWeightsError(
            f"{SETTING} {spec!r}: the model's backbone is a {type(resnet).__name__}"
            ", not detectron2's ResNet (MODEL.BACKBONE.NAME)"
        )
    path, scheme = resolve(spec)
    state = read_state_dict(path)
    depth = resnet_depth(state, path)
    channels = resnet.stem.conv1.weight.shape[1]
    kind = _input_kind(cfg, scheme, state)
    _check_config(cfg, spec, path, depth, kind, channels)
    converted = convert_resnet(state, channels, path)
    own = resnet.state_dict()
    stages = {k.split(".")[0] for k in own}
    converted = {k: v for k, v in converted.items() if k.split(".")[0] in stages}  # stages the model builds
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    shapes = [
        f"{k} (file {tuple(converted[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in converted and converted[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{len(missing)} missing from the file: {', '.join(missing[:5])}" if missing else "",
            f"{len(unexpected)} not in the model: {', '.join(unexpected[:5])}" if unexpected else "",
            f"{len(shapes)} with another shape: {', '.join(shapes[:5])}" if shapes else "",
        ]
        raise PretrainedWeightsError(
            f"{SETTING} {spec!r}: the ResNet-{depth} in {path} does not fit the "
            "model's ResNet: " + "; ".join(p for p in parts if p)
        )
    resnet.load_state_dict({k: v.to(own[k].dtype) for k, v in converted.items()}, strict=True)
    stem = state["conv1.weight"].shape[1]
    info = (
        f"ResNet-{depth} from {path} ({kind} input normalization, {stem}-channel stem on "
        f"{channels}-channel input, {len(converted)} tensors)"
    )
    logger.info(f"Loaded the pretrained backbone: {info}")
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m oxnet.modeling.pretrained",
        description="Pretrained ResNet weights for OXNET.BACKBONE.PRETRAINED: fetch a name into its cache "
        "(needs internet), show where a name is looked for, or print the config overrides.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("fetch", "download NAME into the cache it is looked up in"),
        ("where", "print the file NAME resolves to (an error when it is missing)"),
        ("overrides", "print the KEY VALUE config overrides that start from NAME"),
    ):
        p = sub.add_parser(command, help=text)
        p.add_argument(
            "name",
            help="torchvision://resnet101, timm://resnet50.a1_in1k, xrv://resnet50-res512-all or a file",
        )
        if command == "overrides":
            p.add_argument("--channels", type=int, default=3, choices=(1, 3), help="model input channels")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            fetch(args.name)
        elif args.command == "where":
            print(resolve(args.name)[0])
        else:
            overrides = config_overrides(args.name, args.channels)
            print(" ".join(repr(v) if v.startswith("[") else v for v in overrides))  # ready for a shell
    except PretrainedWeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
