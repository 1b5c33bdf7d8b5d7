"""Fuzzed readers: random mutations of valid OXnet-COCO files and images either load or raise the
project's own error naming the file; never a bare KeyError/TypeError/..., a hang or a huge allocation.

A few examples run in the normal test run (derandomized); ``make fuzz`` sets ``OXNET_FUZZ_EXAMPLES``
to run many random ones.
"""

import json
import warnings

import detectron2.structures  # noqa: F401  (imported before memory is measured)
import numpy as np
import pydicom
import pydicom.pixels  # noqa: F401
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate

from oxnet.data.format import OmniFormatError, load_omni_coco, read_omni_coco, validate_omni_coco
from oxnet.data.io import MAX_IMAGE_PIXELS, ImageReadError, read_image, read_raw, write_dicom, write_png
from oxnet.utils.fuzzing import byte_mutations, fuzz_settings, guarded, json_mutations


# ------------------------------------------------------------------------------------------ OXnet-COCO
def valid_coco():
    """A small valid OXnet-COCO dict: two full images (one with boxes), one weak, one unlabeled."""
    return {
        "images": [
            {
                "id": 1,
                "file_name": "a.png",
                "width": 64,
                "height": 64,
                "supervision": "full",
                "image_labels": {"class1": -1},
                "patient_id": "p1",
            },
            {"id": 2, "file_name": "b.png", "width": 64, "height": 48, "supervision": "full"},
            {
                "id": 3,
                "file_name": "c.png",
                "width": 32,
                "height": 64,
                "supervision": "weak",
                "image_labels": {"class0": 1, "class1": 0},
            },
            {"id": "u4", "file_name": "d.png", "width": 64, "height": 64, "supervision": "unlabeled"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 10], "area": 200, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [30.5, 2, 30, 40], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "class0"}, {"id": 2, "name": "class1"}, {"id": 3, "name": "class2"}],
    }


def check_coco_file(path, image_root):
    """The property: read + validate + load succeed or raise OmniFormatError naming ``path``."""
    with guarded():
        try:
            coco = read_omni_coco(path)
            validate_omni_coco(coco, path, image_root)
            dicts, meta = load_omni_coco(path, image_root)
        except OmniFormatError as e:
            assert str(path) in str(e), f"error does not name the file: {e}"
            return None
    assert len(dicts) == len(coco["images"]) and len(meta["thing_classes"]) == len(coco["categories"])
    for d in dicts:
        assert d["supervision"] in ("full", "weak", "unlabeled")
        for a in d["annotations"]:
            assert len(a["bbox"]) == 4 and a["iscrowd"] in (0, 1)
    return dicts


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("coco")
    for name in ("a.png", "b.png", "c.png", "d.png"):
        (d / name).write_bytes(b"")  # the format check only needs the files to exist
    return d


def test_the_seed_coco_file_loads(coco_dir):
    path = coco_dir / "seed.json"
    path.write_text(json.dumps(valid_coco()))
    dicts = check_coco_file(path, coco_dir)
    assert dicts is not None and len(dicts) == 4 and sum(len(d["annotations"]) for d in dicts) == 2


@fuzz_settings(300)
@given(coco=json_mutations(valid_coco()))
@example(coco={**valid_coco(), "annotations": [dict(valid_coco()["annotations"][0], iscrowd="yes")]})
@example(coco={**valid_coco(), "annotations": [dict(valid_coco()["annotations"][0], iscrowd=None)]})
@example(coco={**valid_coco(), "annotations": [dict(valid_coco()["annotations"][0], image_id=True)]})
def test_mutated_coco_structure(coco, coco_dir):
    path = coco_dir / "mutated.json"
    path.write_text(json.dumps(coco))
    check_coco_file(path, coco_dir)


@fuzz_settings(200)
@given(data=byte_mutations(json.dumps(valid_coco(), indent=1).encode()))
@example(data=b"\xff\xfe{}")  # not UTF-8
@example(data=b"[" * 100000)  # nesting deeper than the parser's recursion limit
@example(data=json.dumps(valid_coco()).encode().replace(b'"a.png"', b'"a\\ud800.png"'))  # lone surrogate
def test_mutated_coco_bytes(data, coco_dir):
    path = coco_dir / "bytes.json"
    path.write_bytes(data)
    check_coco_file(path, coco_dir)


def test_iscrowd_and_boolean_ids_are_format_errors(coco_dir):
    """Regressions found by the fuzzer: a bad ``iscrowd`` crashed the loader with a bare ValueError or
    TypeError, and ``image_id: true`` silently meant image 1."""
    for bad in ({"iscrowd": "yes"}, {"iscrowd": None}, {"iscrowd": 2}, {"image_id": True}):
        coco = valid_coco()
        coco["annotations"][0].update(bad)
        path = coco_dir / "regression.json"
        path.write_text(json.dumps(coco))
        field = next(iter(bad))
        with pytest.raises(OmniFormatError, match=rf"regression\.json.*annotation id=1.*'{field}'"):
            load_omni_coco(path, coco_dir)


# -------------------------------------------------------------------------------------------- images
def _ramp(dtype, hi, shape=(24, 32)):
    return np.rint(np.tile(np.linspace(0, hi, shape[1]), (shape[0], 1))).astype(dtype)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("images")


def seed_bytes(image_dir, kind):
    """The bytes of a valid image: "png8", "png16" or "dicom" (16-bit, rescale and window set)."""
    if kind == "png8":
        write_png(image_dir / "seed8.png", _ramp(np.uint8, 250))
        return (image_dir / "seed8.png").read_bytes()
    if kind == "png16":
        write_png(image_dir / "seed16.png", _ramp(np.uint16, 40000))
        return (image_dir / "seed16.png").read_bytes()
    write_dicom(
        image_dir / "seed.dcm",
        _ramp(np.uint16, 3000),
        bits_stored=12,
        attributes={"RescaleSlope": 2, "RescaleIntercept": -100, "WindowCenter": 2000, "WindowWidth": 3000},
    )
    return (image_dir / "seed.dcm").read_bytes()


def check_image_file(path):
    """The property: read_raw/read_image give a finite 2-D image / uint8 HxWx3, or ImageReadError
    naming ``path``."""
    with guarded(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            raw = read_raw(path)
            img = read_image(path)
        except ImageReadError as e:
            assert str(path) in str(e) and e.path == str(path)
            return None
    assert raw.ndim == 2 and raw.dtype == np.float32 and np.isfinite(raw).all()
    assert img.dtype == np.uint8 and img.shape == raw.shape + (3,)
    return img


@pytest.mark.parametrize("kind", ["png8", "png16", "dicom"])
def test_the_seed_images_read(kind, image_dir):
    path = image_dir / f"ok.{'dcm' if kind == 'dicom' else 'png'}"
    path.write_bytes(seed_bytes(image_dir, kind))
    img = check_image_file(path)
    assert img is not None and img.shape == (24, 32, 3) and img.max() == 255


@pytest.mark.parametrize("kind", ["png8", "png16", "dicom"])
def test_mutated_image_bytes(kind, image_dir):
    seed = seed_bytes(image_dir, kind)
    suffix = "dcm" if kind == "dicom" else "png"

    @fuzz_settings(100)
    @given(data=byte_mutations(seed))
    def run(data):
        path = image_dir / f"mutated.{suffix}"
        path.write_bytes(data)
        check_image_file(path)

    run()


#: DICOM attribute mutations: (keyword, VR, values); "delete" removes the attribute.
DICOM_MUTATIONS = [
    ("Rows", "US", [0, 1, 65535]),
    ("Columns", "US", [0, 1, 65535]),
    ("BitsAllocated", "US", [0, 1, 7, 12, 32, 64]),
    ("BitsStored", "US", [0, 1, 17, 64]),
    ("HighBit", "US", [0, 40]),
    ("PixelRepresentation", "US", [1, 2]),
    ("SamplesPerPixel", "US", [0, 3, 4]),
    ("PhotometricInterpretation", "CS", ["RGB", "PALETTE COLOR", "YBR_FULL_422", "", "MONOCHROME1"]),
    ("PlanarConfiguration", "US", [1, 7]),
    ("NumberOfFrames", "IS", ["0", "2", "abc", "-1"]),
    ("RescaleSlope", "DS", ["NaN", "inf", "0", "1e308", "abc"]),
    ("RescaleIntercept", "DS", ["NaN", "-inf", "1e308"]),
    ("WindowCenter", "DS", ["NaN", "1e308", "abc"]),
    ("WindowWidth", "DS", ["0", "-1", "NaN", "1e-300"]),
    ("VOILUTFunction", "CS", ["SIGMOID", "LINEAR_EXACT", "BOGUS"]),
    ("PixelData", "OW", ["delete", b"", b"\x00\x01\x02", b"\xff" * 4000]),
]
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.5",
    "1.2.3.4",
    "",
]


def mutate_dicom(path, out, edits, syntax):
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword, vr, value in edits:
            if value == "delete":
                if keyword in ds:
                    delattr(ds, keyword)
            elif isinstance(value, str):  # stored as raw bytes: pydicom would parse (and reject) the value
                raw = value.encode() + b" " * (len(value) % 2)
                tag = pydicom.datadict.tag_for_keyword(keyword)
                ds[tag] = RawDataElement(pydicom.tag.Tag(tag), vr, len(raw), raw, 0, False, True)
            else:
                ds.add_new(keyword, vr, value)
        if syntax is not None:
            ds.file_meta.TransferSyntaxUID = syntax
            uid = pydicom.uid.UID(syntax)
            if (
                uid in pydicom.uid.AllTransferSyntaxes
                and uid.is_compressed
                and isinstance(ds.get("PixelData"), bytes)
            ):
                ds.PixelData = encapsulate([ds.PixelData or b"\0\0"])  # native pixels as a compressed frame
        # the body stays explicit VR little endian whatever the header claims (a wrong transfer syntax)
        pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=True, force_encoding=True)


@st.composite
def dicom_edits(draw):
    edits = []
    for _ in range(draw(st.integers(0, 3))):
        keyword, vr, values = draw(st.sampled_from(DICOM_MUTATIONS))
        edits.append((keyword, vr, draw(st.sampled_from(values))))
    syntax = draw(st.none() | st.sampled_from(TRANSFER_SYNTAXES))
    truncate = draw(st.none() | st.integers(0, 3000))
    return edits, syntax, truncate


def test_mutated_dicom_attributes(image_dir):
    seed = image_dir / "attr_seed.dcm"
    seed.write_bytes(seed_bytes(image_dir, "dicom"))

    @fuzz_settings(200)
    @given(case=dicom_edits())
    @example(case=([("RescaleSlope", "DS", "NaN")], None, None))
    @example(case=([("PixelData", "OW", "delete")], None, None))
    @example(case=([], "1.2.840.10008.1.2.4.50", None))
    @example(case=([("Rows", "US", 0)], None, None))
    @example(case=([("NumberOfFrames", "IS", "abc")], None, None))
    @example(case=([("Rows", "US", 65535), ("Columns", "US", 65535)], None, None))
    @example(case=([], None, 700))
    def run(case):
        edits, syntax, truncate = case
        out = image_dir / "attr.dcm"
        mutate_dicom(seed, out, edits, syntax)
        if truncate is not None:
            out.write_bytes(out.read_bytes()[:truncate])
        check_image_file(out)

    run()


def test_images_beyond_the_pixel_limit_are_refused_before_decoding(image_dir):
    """A header claiming an absurd size is refused with the documented limit, before any allocation."""
    side = int(np.sqrt(MAX_IMAGE_PIXELS)) + 1
    seed = image_dir / "big_seed.dcm"
    seed.write_bytes(seed_bytes(image_dir, "dicom"))
    out = image_dir / "big.dcm"
    mutate_dicom(seed, out, [("Rows", "US", side), ("Columns", "US", side)], None)
    with pytest.raises(ImageReadError, match=r"big\.dcm.*pixels.*limit"):
        read_raw(out)
    png = bytearray(seed_bytes(image_dir, "png8"))
    png[16:24] = side.to_bytes(4, "big") * 2  # IHDR width and height (the CRC is then wrong too)
    (image_dir / "big.png").write_bytes(bytes(png))
    with pytest.raises(ImageReadError, match=r"big\.png.*pixels.*limit"):
        read_raw(image_dir / "big.png")
