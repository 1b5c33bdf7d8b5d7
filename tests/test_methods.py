"""The methods of OXNET.METHOD: one registry, compositions of the components, errors that list them."""

import pytest
from detectron2.modeling import build_model

from oxnet.methods import (
    METHOD_REGISTRY,
    Method,
    get_method,
    method_components,
    method_names,
    register_method,
    uses_image_labels,
    uses_teacher,
)
from oxnet.modeling.unsup import UNSUP_LOSS_REGISTRY, build_unsup_loss
from oxnet.testing import tiny_cfg


def test_table1_rows_in_order_then_the_extra_rows():
    assert method_names()[:2] == ["retinanet", "retinanet_neg"]
    assert method_names()[-9:] == [
        "daa",
        "daa_gpa",
        "oxnet",
        "daa_neg",
        "oxnet_neg",
        "oxnet_plus",
        "sfl_plus",
        "retinanet_authors",
        "oxnet_authors",
    ]
    assert method_components("oxnet_authors") == method_components("oxnet")
    assert get_method("oxnet_authors").warm_start == "retinanet_authors"
    assert method_components("oxnet") == {
        "global_head": "daa",
        "gpa": True,
        "unsup": "sfl",
        "weak_negatives": False,
    }
    assert uses_teacher("mmt_psm_mt") and not uses_teacher("pi_model")
    assert uses_image_labels("retinanet_neg") and not uses_image_labels("mean_teacher")


def test_every_unsupervised_component_is_a_registered_loss():
    for name in method_names():
        unsup = get_method(name).unsup
        if unsup:
            assert UNSUP_LOSS_REGISTRY.get(unsup).name == unsup
    assert sorted(UNSUP_LOSS_REGISTRY.names()) == ["focalmix", "mean_teacher", "mmt_psm", "pi", "sfl"]


def test_unknown_and_duplicate_names_are_errors_listing_the_known_ones():
    with pytest.raises(
        ValueError, match=r"unknown OXNET.METHOD 'oxnet2'; choose one of retinanet, retinanet_neg, "
    ):
        get_method("oxnet2")
    with pytest.raises(ValueError, match=r"'daa' is already registered; registered: retinanet, .*daa_gpa"):
        register_method(Method("daa", global_head="daa"))
    assert get_method("daa").gpa is False  # the registered one is unchanged
    with pytest.raises(
        ValueError, match=r"unknown name 'vat'; registered: focalmix, mean_teacher, mmt_psm, pi, sfl"
    ):
        build_unsup_loss("vat", tiny_cfg())
    with pytest.raises(ValueError, match="GPA needs the DAA global head"):
        Method("broken", global_head="gap", gpa=True)
    assert "broken" not in METHOD_REGISTRY.names()


def test_a_method_defined_with_config_values_refuses_a_config_without_them():
    cfg = tiny_cfg("oxnet_plus")
    with pytest.raises(
        ValueError, match=r"oxnet_plus needs OXNET.SFL.MODE 'filtered' \(as configs/table1/oxnet_plus.yaml"
    ):
        build_model(cfg)
    cfg.OXNET.SFL.MODE = "filtered"
    with pytest.raises(ValueError, match="needs OXNET.GLOBAL_HEAD.INIT 'zero'"):
        build_model(cfg)
    cfg.OXNET.GLOBAL_HEAD.INIT = "zero"
    model = build_model(cfg)
    assert model.unsup_loss.mode == "filtered" and model.global_head.conv.weight.abs().sum() == 0
