"""The DICOM SR of detections: codes, boxes, scores and references as sent; identifiers copied and
nothing else; valid for dciodvfy. The source images are Digital X-Ray images with synthetic patient
and study attributes (:func:`oxnet.data.io.write_dx_dicom`) that dciodvfy accepts too."""

import numpy as np
import pydicom
import pytest
from highdicom.sr import srread
from highdicom.sr.utils import find_content_items
from pydicom.sr.codedict import codes

from oxnet.config import PAPER_CLASSES
from oxnet.data.io import DX_FOR_PRESENTATION, write_dx_dicom
from oxnet.deploy.sr import (
    FINDING_CODES,
    LOCAL_SCHEME,
    SRBuildError,
    build_sr,
    finding_code,
    operating_point_parameters,
    read_findings,
    referenced_instances,
    sr_bytes,
)

IDENTIFIERS = dict(
    PatientName="Doe^Jane",
    PatientID="P-0001",
    PatientBirthDate="19600102",
    PatientSex="F",
    StudyDate="20240305",
    StudyTime="101112",
    AccessionNumber="ACC42",
    StudyID="S7",
    ReferringPhysicianName="Ref^Doctor",
)
PRIVATE = dict(
    InstitutionName="General Hospital",
    PatientAddress="1 Main Street",
    OtherPatientIDs="X-99",
    StudyDescription="CHEST PA",
    OperatorsName="Tech^Tom",
    SeriesDescription="PA erect",
)
MODEL_INFO = {
    "format": "onnx",
    "config_sha1": "0123456789abcdef",
    "oxnet_version": "9.8.7",
    "score_thresh": 0.05,
    "class_names": ["nodule", "effusion", "class2"],
}
DETECTIONS = [
    {"category_id": 1, "category_name": "nodule", "bbox": [10.5, 5.25, 20.0, 10.0], "score": 0.91},
    {"category_id": 2, "category_name": "pleural effusion", "bbox": [30.0, 20.0, 33.0, 27.5], "score": 0.42},
    {"category_id": 3, "category_name": "class2", "bbox": [0.0, 0.0, 8.0, 6.0], "score": 0.07},
]


def _source_path(tmp_path):
    path = tmp_path / "cxr.dcm"
    img = (np.random.default_rng(0).random((48, 64)) * 4095).astype(np.uint16)
    write_dx_dicom(path, img, **IDENTIFIERS, **PRIVATE)
    return path


@pytest.fixture
def source(tmp_path):
    """A DX chest X-ray (For Presentation) with the patient's identifiers and some private details."""
    ds = pydicom.dcmread(_source_path(tmp_path))
    assert ds.SOPClassUID == DX_FOR_PRESENTATION and ds.Modality == "DX"
    return ds


def _write(tmp_path, ds, name="sr.dcm"):
    path = tmp_path / name
    path.write_bytes(sr_bytes(ds))
    return path


def test_sr_round_trip(tmp_path, source):
    result = {"width": 64, "height": 48, "detections": DETECTIONS, "image_scores": None}
    path = _write(tmp_path, build_sr(source, result, MODEL_INFO))

    sr = srread(path)  # highdicom parses it back as an SR document
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    ds = pydicom.dcmread(path)
    findings = read_findings(ds)
    assert len(findings) == len(DETECTIONS)
    for det, got in zip(DETECTIONS, findings):
        x, y, w, h = det["bbox"]
        assert got["polyline"] == [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]
        assert got["score"] == pytest.approx(det["score"], abs=1e-6)
        assert got["referenced_sop_instance_uid"] == source.SOPInstanceUID
    assert findings[0]["code"] == ("27925004", "SCT", "Nodule")
    assert findings[1]["code"] == ("60046008", "SCT", "Pleural effusion")
    assert findings[2]["code"] == ("class2", LOCAL_SCHEME, "class2")  # unknown name: local scheme
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == LOCAL_SCHEME
    assert referenced_instances(ds) == {source.SOPInstanceUID}

    # The score is a NUM "Certainty of Finding" in UCUM "1"; the algorithm and the device observer
    # carry the model's name and version.
    group = sr.content.get_planar_roi_measurement_groups()[0]
    (meas,) = group.get_measurements()
    assert meas.name == codes.DCM.CertaintyOfFinding
    assert meas.unit.value == "1" and meas.unit.scheme_designator == "UCUM"
    algorithm = {
        item.name.meaning: item.value
        for item in find_content_items(group[0], relationship_type=None, recursive=True)
        if item.name in (codes.DCM.AlgorithmName, codes.DCM.AlgorithmVersion)
    }
    assert algorithm == {"Algorithm Name": "OXnet", "Algorithm Version": "9.8.7"}
    (device,) = sr.content.get_observer_contexts(observer_type=codes.DCM.Device)
    assert device.observer_identifying_attributes.name == "OXnet"
    assert "9.8.7" in device.observer_identifying_attributes.model_name

    # Identifiers copied, nothing else of the input.
    for key, value in IDENTIFIERS.items():
        assert str(ds[key].value) == value, key
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID and ds.Modality == "SR"
    for key in PRIVATE:
        assert key not in ds or (key == "SeriesDescription" and ds.SeriesDescription != PRIVATE[key]), key
    assert "PixelData" not in ds


def test_sr_without_findings_says_none_found(tmp_path, source):
    path = _write(tmp_path, build_sr(source, {"width": 64, "height": 48, "detections": []}, MODEL_INFO))
    sr = srread(path)
    assert read_findings(sr) == []
    (group,) = sr.content.get_image_measurement_groups()
    assert group.finding_type == codes.DCM.NoAbnormality
    assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID
    assert referenced_instances(sr) == {source.SOPInstanceUID}


def test_multiframe_source_references_its_frame(tmp_path, source):
    source.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.2"  # Multi-frame Grayscale Byte Secondary Capture
    source.NumberOfFrames = 2
    result = {"width": 64, "height": 48, "detections": DETECTIONS[:1]}
    ds = pydicom.dcmread(_write(tmp_path, build_sr(source, result, MODEL_INFO, frame=2)))
    assert read_findings(ds)[0]["referenced_frames"] == [2]


def test_same_report_same_uid_and_other_detections_another(source):
    result = {"width": 64, "height": 48, "detections": DETECTIONS}
    a, b = build_sr(source, result, MODEL_INFO), build_sr(source, result, MODEL_INFO)
    assert a.SOPInstanceUID == b.SOPInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
    c = build_sr(source, {"width": 64, "height": 48, "detections": DETECTIONS[:2]}, MODEL_INFO)
    assert c.SOPInstanceUID != a.SOPInstanceUID and c.SeriesInstanceUID == a.SeriesInstanceUID


def test_box_overhanging_the_image_is_clipped(source):
    det = {"category_name": "mass", "bbox": [-2.0, 40.0, 70.0, 20.0], "score": 0.5}
    (got,) = read_findings(build_sr(source, {"width": 64, "height": 48, "detections": [det]}, MODEL_INFO))
    assert got["bbox"] == [0.0, 40.0, 64.0, 8.0]


@pytest.mark.parametrize(
    "result, message",
    [
        ({"width": 32, "height": 48, "detections": []}, "32x48 image, the source is 64x48"),
        (
            {
                "width": 64,
                "height": 48,
                "detections": [DETECTIONS[0], {**DETECTIONS[1], "bbox": [1, 2, 0, 4]}],
            },
            r"detections\[1\].bbox: width and height must be > 0",
        ),
        (
            {"width": 64, "height": 48, "detections": [{**DETECTIONS[0], "score": 1.5}]},
            r"detections\[0\].score",
        ),
        (
            {"width": 64, "height": 48, "detections": [{**DETECTIONS[0], "bbox": [1, 2, 3]}]},
            r"detections\[0\].bbox",
        ),
        ({"width": 64, "height": 48, "detections": [{**DETECTIONS[0], "bbox": [100, 100, 3, 3]}]}, "outside"),
    ],
)
def test_bad_results_are_named_errors(source, result, message):
    with pytest.raises(SRBuildError, match=message):
        build_sr(source, result, MODEL_INFO)


def test_source_without_uids_is_an_error(source):
    del source.SOPInstanceUID
    with pytest.raises(SRBuildError, match="missing SOPInstanceUID"):
        build_sr(source, {"width": 64, "height": 48, "detections": []}, MODEL_INFO)


def test_every_named_class_has_a_standard_code():
    named = [
        "atelectasis",
        "calcification",
        "consolidation",
        "effusion",
        "emphysema",
        "fibrosis",
        "fracture",
        "mass",
        "nodule",
        "tuberculosis",
        *PAPER_CLASSES,
    ]
    for name in named:
        value, scheme, meaning = finding_code(name)
        assert scheme == "SCT" and value.isdigit() and meaning, name
    assert finding_code("Pleural_Effusion") == FINDING_CODES["pleural effusion"]
    assert finding_code("Tuberculosis") == ("56717001", "SCT", "Tuberculosis")
    assert finding_code("Atelectasis") == ("46621007", "SCT", "Atelectasis")
    assert finding_code("lesion x")[1] == LOCAL_SCHEME


def test_dciodvfy_reports_no_error(tmp_path, source, dciodvfy):
    """The source DX image and every SR written from it pass dciodvfy without an error."""
    if dciodvfy is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    out, errors = dciodvfy(tmp_path / "cxr.dcm")  # the fixture's file
    assert "DXImageForPresentation" in out, out  # it recognized the IOD
    assert not errors, out
    with_findings = build_sr(source, {"width": 64, "height": 48, "detections": DETECTIONS}, MODEL_INFO)
    without = build_sr(source, {"width": 64, "height": 48, "detections": []}, MODEL_INFO)
    points = operating_point_parameters(
        {"nodule": 0.4, "effusion": 0.3},
        {"val": "/v/val.json", "classes": {"nodule": {"source": "class", "sensitivity": 0.8}}},
    )
    stated = build_sr(
        source, {"width": 64, "height": 48, "detections": DETECTIONS}, MODEL_INFO, operating_points=points
    )
    for name, ds in (("findings.dcm", with_findings), ("none.dcm", without), ("points.dcm", stated)):
        out, errors = dciodvfy(_write(tmp_path, ds, name))
        assert "Comprehensive3DSR" in out, out  # it recognized the IOD
        assert not errors, out


def test_the_sr_states_the_operating_points_or_that_there_are_none(source):
    """The algorithm's parameters in the SR name each class's operating point (threshold, how it was
    chosen, sensitivity and false positives per image on the validation set), or say the findings
    are uncalibrated."""
    result = {"width": 64, "height": 48, "detections": DETECTIONS[:1]}
    details = {
        "val": "/data/val.json",
        "classes": {"nodule": {"source": "pooled", "sensitivity": 0.75, "fp_per_image": 1.5}},
    }
    points = operating_point_parameters({"nodule": 0.4, "pleural effusion": 0.3}, details)
    assert points == [
        "operating_point[nodule]=threshold 0.4000 (pooled), lesion sensitivity 0.75, "
        "1.50 false positives per image",
        "operating_point[pleural effusion]=threshold 0.3000",
        "operating_points_validation=val.json",
    ]
    data = sr_bytes(build_sr(source, result, MODEL_INFO, operating_points=points))
    assert all(p.encode() in data for p in points)
    none = sr_bytes(build_sr(source, result, MODEL_INFO, operating_points=operating_point_parameters(None)))
    assert b"operating_points=uncalibrated" in none and b"operating_point[" not in none
