"""Detections as a DICOM Structured Report: a TID 1500 Measurement Report per image (highdicom).

One report per source image. Every detected box is a TID 1410 planar ROI measurement group:

* finding type: the class's code from :data:`FINDING_CODES` (SNOMED CT); a class name the table does
  not know gets a code of the local scheme :data:`LOCAL_SCHEME` (code value: the normalized class
  name, meaning: the class name) instead of an error;
* region: a SCOORD POLYLINE, the closed rectangle (5 points, the first repeated last) of the COCO box
  ``[x, y, w, h]`` in the source image's pixel grid (DICOM's image coordinates: (0, 0) is the top left
  corner of the top left pixel, as in COCO), referencing the source image's SOP Instance UID (and its
  frame for a multi-frame image);
* measurement: the detection score as DCM 111012 "Certainty of Finding", UCUM unit ``1`` (a
  probability in [0, 1]);
* algorithm identification: the model's name, version and parameters (config SHA-1, format).

The observer is a device (the algorithm). An image without detections still gets a report: one
TID 1501 group referencing the image whose finding is DCM 111286 "No abnormality" (nothing above
the model's score threshold), so that "looked at, nothing found" differs from "not processed".

Of the source image only its identifiers are copied: patient name, ID, birth date and sex, study
instance UID, study ID, date and time, accession number, referring physician name (missing ones are
left empty), and the SOP Class/Instance UIDs it is referenced by.
"""

import io
import json
import math
import os
import re

import numpy as np

__all__ = [
    "FINDING_CODES",
    "FINDING_SITES",
    "LOCAL_SCHEME",
    "SRBuildError",
    "finding_code",
    "model_key",
    "report_series_uid",
    "build_sr",
    "sr_bytes",
    "referenced_instances",
    "read_findings",
]

#: Class name -> (code value, coding scheme designator, code meaning). SNOMED CT concepts; the nine
#: classes of the paper's data (oxnet.config.PAPER_CLASSES) and the common chest X-ray classes
#: of public datasets (ChestX-ray14, ChestX-Det10, TBX11K). Names are matched after
#: :func:`normalize_name` (lower case, "_"/"-" as spaces).
FINDING_CODES = {
    "atelectasis": ("46621007", "SCT", "Atelectasis"),
    "calcification": ("18115005", "SCT", "Pathologic calcification"),
    "aortic calcification": ("18115005", "SCT", "Pathologic calcification"),  # + site: aorta
    "cardiomegaly": ("8186001", "SCT", "Cardiomegaly"),
    "consolidation": ("95436008", "SCT", "Lung consolidation"),
    "effusion": ("60046008", "SCT", "Pleural effusion"),
    "pleural effusion": ("60046008", "SCT", "Pleural effusion"),
    "emphysema": ("87433001", "SCT", "Pulmonary emphysema"),
    "fibrosis": ("51615001", "SCT", "Fibrosis of lung"),
    "fracture": ("72704001", "SCT", "Fracture"),
    "mass": ("4147007", "SCT", "Mass"),
    "nodule": ("27925004", "SCT", "Nodule"),
    "pneumonia": ("233604007", "SCT", "Pneumonia"),
    "pneumothorax": ("36118008", "SCT", "Pneumothorax"),
    "tuberculosis": ("56717001", "SCT", "Tuberculosis"),
}

#: Class name -> finding site (code value, scheme, meaning), for classes whose name carries one.
FINDING_SITES = {
    "aortic calcification": ("15825003", "SCT", "Aorta"),
}

#: Coding scheme of classes that :data:`FINDING_CODES` does not know ("99" marks a local scheme, DICOM
#: PS3.16 section 8.2); code value = the normalized class name, meaning = the class name.
LOCAL_SCHEME = "99OXNET"

_CERTAINTY = ("111012", "DCM", "Certainty of Finding")
_UNIT = ("1", "UCUM", "no units")
_PROCEDURE = ("399208008", "SCT", "Plain chest X-ray")

# Source-image attributes the report may carry (identifiers only) and those highdicom needs to
# reference the image; nothing else of the input reaches the report.
_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
)
_REFERENCE = (
    "SOPClassUID",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PixelRepresentation",
    "NumberOfFrames",
    "Modality",
)


class SRBuildError(ValueError):
    """A source image or detection result that cannot be reported; the message names the problem."""


def normalize_name(name):
    """Lower case, '_' and '-' as spaces, runs of spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]", " ", str(name))).strip().lower()


def finding_code(name):
    """The (code value, scheme, meaning) of a class name: from :data:`FINDING_CODES`, or a code of
    :data:`LOCAL_SCHEME` for a name it does not know."""
    key = normalize_name(name)
    if key in FINDING_CODES:
        return FINDING_CODES[key]
    if not key:
        raise SRBuildError(f"empty class name {name!r}")
    return (key, LOCAL_SCHEME, str(name)[:64])


def _concept(triple):
    from highdicom.sr import CodedConcept

    value, scheme, meaning = triple
    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _reference_copy(source):
    """A new dataset with only the identifiers the report copies and the reference attributes."""
    from pydicom.dataset import Dataset

    missing = [
        k
        for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
        if not source.get(k)
    ]
    if missing:
        raise SRBuildError(f"source image {source.get('SOPInstanceUID', '?')}: missing {', '.join(missing)}")
    ref = Dataset()
    for key in _COPIED + _REFERENCE:
        if key in source:
            ref[key] = source[key]
    for key in _COPIED:  # type 2 in the report: present, possibly empty
        if key not in ref:
            setattr(ref, key, "" if key != "StudyInstanceUID" else source.StudyInstanceUID)
    if "SpecificCharacterSet" in source:
        ref.SpecificCharacterSet = source.SpecificCharacterSet
    return ref


def _check_detection(i, det, width, height):
    where = f"detections[{i}]"
    for key in ("category_name", "bbox", "score"):
        if key not in det:
            raise SRBuildError(f"{where}: missing field {key!r}")
    bbox = det["bbox"]
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError) as e:
        raise SRBuildError(f"{where}.bbox: expected [x, y, w, h] numbers, got {bbox!r}") from e
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise SRBuildError(f"{where}.bbox: not finite: {bbox!r}")
    if w <= 0 or h <= 0:
        raise SRBuildError(f"{where}.bbox: width and height must be > 0, got {bbox!r}")
    score = float(det["score"])
    if not (0.0 <= score <= 1.0):
        raise SRBuildError(f"{where}.score: expected a probability in [0, 1], got {det['score']!r}")
    # Clip to the image (a box may overhang by rounding); the polyline stays on the image.
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x1 <= x0 or y1 <= y0:
        raise SRBuildError(f"{where}.bbox {bbox!r} lies outside the {width}x{height} image")
    return (x0, y0, x1, y1), score


def _model_identity(model_info):
    name = str(model_info.get("algorithm_name") or "OXnet")
    version = str(model_info.get("oxnet_version") or _oxnet_version())
    params = [
        f"{k}={model_info[k]}"
        for k in ("config_sha1", "format", "score_thresh")
        if model_info.get(k) not in (None, "")
    ]
    return name, version, params


def operating_point_parameters(thresholds, details=None):
    """The algorithm parameters that state the operating points the findings passed: one
    ``operating_point[CLASS]=...`` per class (threshold, how it was chosen, the lesion sensitivity and
    false positives per image on the validation set, from ``thresholds_info.json``), or
    ``operating_points=uncalibrated`` when the model has none (every box above its test threshold)."""
    if not thresholds:
        return ["operating_points=uncalibrated (no thresholds.json: every box above the test threshold)"]
    classes = (details or {}).get("classes", {})
    out = []
    for name, t in thresholds.items():
        d = classes.get(name, {})
        text = f"operating_point[{name}]=threshold {float(t):.4f}"
        if d.get("source"):
            text += f" ({d['source']})"
        if d.get("sensitivity") is not None:
            text += f", lesion sensitivity {d['sensitivity']:.2f}"
        if d.get("fp_per_image") is not None:
            text += f", {d['fp_per_image']:.2f} false positives per image"
        out.append(text)
    if details and details.get("val"):
        out.append(f"operating_points_validation={os.path.basename(str(details['val']))}")
    return out


def model_key(model_info):
    """What identifies a model in UIDs: its config SHA-1, else its name and version."""
    name, version, _ = _model_identity(model_info)
    return model_info.get("config_sha1") or f"{name} {version}"


def report_series_uid(study_instance_uid, model_info):
    """The Series Instance UID of a model's reports in a study (:func:`build_sr`'s default)."""
    return _uid("oxnet-series", study_instance_uid, model_key(model_info))


def _oxnet_version():
    import oxnet

    return oxnet.__version__


def _is_multiframe(ds):
    """Whether the image's IOD is a multi-frame one (its frames are then referenced by number)."""
    try:
        from highdicom._standard_utils import is_multiframe_image
    except ImportError:  # a highdicom without it: judge by the frame count
        return int(ds.get("NumberOfFrames", 1) or 1) > 1
    return is_multiframe_image(ds)


def _uid(*parts):
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(p) for p in parts])


def build_sr(
    source,
    result,
    model_info,
    series_instance_uid=None,
    sop_instance_uid=None,
    series_number=900,
    instance_number=1,
    frame=1,
    operating_points=None,
):
    """A Comprehensive 3D SR (TID 1500 Measurement Report) of one image's detections.

    Args:
        source: the source image's pydicom Dataset (pixel data not needed).
        result: ``DeployedModel.predict``'s dict (``width``, ``height``, ``detections`` with
            ``category_name``, ``bbox`` [x, y, w, h] in the source pixel grid, ``score``).
        model_info: the model's ``model.json`` dict (name/version/config SHA-1 of the algorithm).
        series_instance_uid, sop_instance_uid: default to UIDs derived from the study and model
            (one series per study and model) and from the image, model and detections (the same
            report twice has the same UID, so a PACS stores it once).
        frame: the referenced frame of a multi-frame source (ignored for single-frame images).
        operating_points: algorithm parameters stating the operating points
            (:func:`operating_point_parameters`); None adds nothing.

    Raises:
        SRBuildError: missing source identifiers, a result whose size differs from the image's, bad
            boxes or scores (the message names the detection).
    """
    from highdicom.sr import (
        AlgorithmIdentification,
        Comprehensive3DSR,
        DeviceObserverIdentifyingAttributes,
        FindingSite,
        GraphicTypeValues,
        ImageRegion,
        Measurement,
        MeasurementReport,
        MeasurementsAndQualitativeEvaluations,
        ObservationContext,
        ObserverContext,
        PlanarROIMeasurementsAndQualitativeEvaluations,
        SourceImageForMeasurementGroup,
        SourceImageForRegion,
        TrackingIdentifier,
    )
    from pydicom.sr.codedict import codes

    ref = _reference_copy(source)
    sop_uid = str(ref.SOPInstanceUID)
    rows, cols = ref.get("Rows"), ref.get("Columns")
    width, height = result.get("width"), result.get("height")
    known = rows is not None and cols is not None and width is not None and height is not None
    if known and (int(width), int(height)) != (int(cols), int(rows)):
        raise SRBuildError(
            f"image {sop_uid}: the result is for a {width}x{height} image, the source is "
            f"{cols}x{rows} (boxes must be in the source's pixel grid)"
        )
    width = float(cols if cols is not None else width)
    height = float(rows if rows is not None else height)
    frame_numbers = [int(frame)] if _is_multiframe(ref) else None

    name, version, params = _model_identity(model_info)
    params = params + list(operating_points or [])
    algorithm = AlgorithmIdentification(name=name, version=version, parameters=params or None)
    key = model_key(model_info)
    observer = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=_uid("oxnet-device", key),
            name=name,
            manufacturer_name="OXnet",
            model_name=f"{name} {version}"[:64],
        ),
    )
    context = ObservationContext(observer_device_context=observer)

    detections = list(result.get("detections") or [])
    groups = []
    for i, det in enumerate(detections):
        (x0, y0, x1, y1), score = _check_detection(i, det, width, height)
        cls = normalize_name(det["category_name"])
        polyline = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)
        region = ImageRegion(
            graphic_type=GraphicTypeValues.POLYLINE,
            graphic_data=polyline,
            source_image=SourceImageForRegion.from_source_image(ref, referenced_frame_numbers=frame_numbers),
        )
        sites = None
        if cls in FINDING_SITES:
            sites = [FindingSite(anatomic_location=_concept(FINDING_SITES[cls]))]
        groups.append(
            PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(
                    uid=_uid("oxnet-finding", sop_uid, key, i),
                    identifier=f"finding {i + 1}: {det['category_name']}"[:64],
                ),
                referenced_region=region,
                finding_type=_concept(finding_code(det["category_name"])),
                algorithm_id=algorithm,
                finding_sites=sites,
                measurements=[Measurement(name=_concept(_CERTAINTY), value=score, unit=_concept(_UNIT))],
            )
        )
    if not groups:
        groups.append(
            MeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(
                    uid=_uid("oxnet-none", sop_uid, key), identifier="no findings"
                ),
                finding_type=codes.DCM.NoAbnormality,
                algorithm_id=algorithm,
                source_images=[
                    SourceImageForMeasurementGroup.from_source_image(
                        ref, referenced_frame_numbers=frame_numbers
                    )
                ],
            )
        )

    report = MeasurementReport(
        observation_context=context, procedure_reported=_concept(_PROCEDURE), imaging_measurements=groups
    )
    content = json.dumps(
        [[d.get("category_name"), [float(v) for v in d["bbox"]], float(d["score"])] for d in detections]
    )
    sr = Comprehensive3DSR(
        evidence=[ref],
        content=report[0],
        series_instance_uid=series_instance_uid or report_series_uid(ref.StudyInstanceUID, model_info),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or _uid("oxnet-sr", sop_uid, key, content),
        instance_number=instance_number,
        manufacturer="OXnet",
        is_complete=True,
        series_description=f"{name} detections"[:64],
    )
    if any(finding_code(d["category_name"])[1] == LOCAL_SCHEME for d in detections):
        from pydicom.dataset import Dataset

        scheme = Dataset()
        scheme.CodingSchemeDesignator = LOCAL_SCHEME
        scheme.CodingSchemeName = "OXnet model class names"
        scheme.CodingSchemeResponsibleOrganization = "OXnet"
        sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


def sr_bytes(ds):
    """The report as a DICOM Part 10 file (preamble, file meta, Explicit VR Little Endian)."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def referenced_instances(ds):
    """SOP Instance UIDs an SR references as evidence (CurrentRequestedProcedureEvidenceSequence and
    PertinentOtherEvidenceSequence)."""
    uids = set()
    for key in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(key, []):
            for series in study.get("ReferencedSeriesSequence", []):
                for item in series.get("ReferencedSOPSequence", []):
                    uids.add(str(item.ReferencedSOPInstanceUID))
    return uids


def _frames(item):
    """ReferencedFrameNumber as a list of ints (pydicom gives one value or a MultiValue)."""
    value = item.get("ReferencedFrameNumber")
    if value is None or value == "":
        return []
    from pydicom.multival import MultiValue

    return [int(f) for f in (value if isinstance(value, (MultiValue, list, tuple)) else [value])]


def read_findings(ds):
    """The findings of a report :func:`build_sr` wrote, as dicts: ``code`` (value, scheme, meaning),
    ``bbox`` [x, y, w, h], ``score``, ``referenced_sop_instance_uid``, ``referenced_frames``; an
    empty list for a "no findings" report."""
    from highdicom.sr import Comprehensive3DSR

    sr = Comprehensive3DSR.from_dataset(ds)
    out = []
    for group in sr.content.get_planar_roi_measurement_groups():
        region = group.roi
        pts = np.asarray(region.value, dtype=float)
        x0, y0 = pts[:, 0].min(), pts[:, 1].min()
        x1, y1 = pts[:, 0].max(), pts[:, 1].max()
        src = region.ContentSequence[0]
        ref_item = src.ReferencedSOPSequence[0]
        certainty = [m for m in group.get_measurements() if m.name == _concept(_CERTAINTY)]
        ft = group.finding_type
        out.append(
            {
                "code": (ft.value, ft.scheme_designator, ft.meaning),
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "polyline": pts.tolist(),
                "score": float(certainty[0].value) if certainty else None,
                "referenced_sop_instance_uid": str(ref_item.ReferencedSOPInstanceUID),
                "referenced_frames": _frames(ref_item),
            }
        )
    return out
