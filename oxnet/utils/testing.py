"""Small configurations and inputs for tests and benchmarks (like ``detectron2.utils.testing``)."""
import os

import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances

import oxnet.modeling  # noqa: F401  (registers OXNet)
from oxnet.config import add_oxnet_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_cfg(method="oxnet", num_classes=3, size=64):
    """A very small OXnet config (ResNet-18, 64-channel FPN, one head conv) on the CPU."""
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", "demo_cpu.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RETINANET.NUM_CLASSES = num_classes
    cfg.MODEL.RETINANET.NUM_CONVS = 1
    cfg.OXNET.INPUT_SIZE = size
    cfg.OXNET.METHOD = method
    return cfg


def random_input(level, size=64, boxes=(), classes=(), labels=None, seed=0):
    """A model input dict with a random image, tagged with a supervision level."""
    g = torch.Generator().manual_seed(seed)
    d = {"image": torch.rand(3, size, size, generator=g) * 255, "supervision": level,
         "height": size, "width": size}
    if level == "full":
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
        d["instances"] = inst
    if labels is not None:
        d["image_labels"] = torch.tensor(labels, dtype=torch.float32)
    return d
