import cv2
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML

from oxnet.data.io import (
    ImageReadError,
    is_dicom,
    read_image,
    read_raw,
    scale_to_uint8,
    write_dicom,
    write_png,
)


def ramp(dtype=np.uint16, hi=4000, shape=(32, 48)):
    """A horizontal ramp: column j has value j * hi / (width - 1)."""
    row = np.linspace(0, hi, shape[1])
    return np.rint(np.tile(row, (shape[0], 1))).astype(dtype)


def check_uint8_3ch(img, shape):
    assert img.dtype == np.uint8 and img.shape == shape + (3,) and img.flags["C_CONTIGUOUS"]
    assert np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 0], img[:, :, 2])


def test_png_8_and_16_bit(tmp_path):
    for dtype, hi in ((np.uint8, 200), (np.uint16, 40000)):
        a = ramp(dtype, hi)
        a[0, 0] = hi // 4  # not a pure ramp, so the min-max scaling is tested
        path = tmp_path / f"x{np.dtype(dtype).itemsize}.png"
        write_png(path, a)
        raw = read_raw(path)
        assert raw.dtype == np.float32 and np.array_equal(raw, a.astype(np.float32))
        img = read_image(path)
        check_uint8_3ch(img, a.shape)
        assert img.min() == 0 and img.max() == 255
        expected = np.rint((a.astype(np.float64) - a.min()) * 255 / (a.max() - a.min()))
        assert np.abs(img[:, :, 0] - expected).max() <= 1


def test_colour_png_and_jpeg_become_grey(tmp_path):
    grey = ramp(np.uint8, 250)
    bgr = np.stack([grey, grey, grey], axis=2)
    bgr[:, :, 2] = 255 - grey  # red decreases while blue/green increase: must be converted, not a channel
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert np.array_equal(read_raw(tmp_path / "c.png"), expected)
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([bgr, np.full_like(grey, 255)]))  # with alpha
    assert np.array_equal(read_raw(tmp_path / "a.png"), expected)
    cv2.imwrite(str(tmp_path / "g.jpg"), grey, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert np.abs(read_raw(tmp_path / "g.jpg") - grey).max() <= 3


def test_constant_image_gives_zeros(tmp_path):
    write_png(tmp_path / "c.png", np.full((10, 12), 77, np.uint8))
    img = read_image(tmp_path / "c.png")
    check_uint8_3ch(img, (10, 12))
    assert not img.any()
    assert not scale_to_uint8(np.full((3, 3), -5.0)).any()


def test_dicom_rescale_and_16_bit(tmp_path):
    a = ramp(np.uint16, 3000)
    path = tmp_path / "ct.dcm"
    write_dicom(path, a, bits_stored=12, attributes={"RescaleSlope": 2, "RescaleIntercept": -1024})
    raw = read_raw(path)
    assert np.allclose(raw, a * 2.0 - 1024)
    img = read_image(path)
    check_uint8_3ch(img, a.shape)
    assert img[0, 0, 0] == 0 and img[0, -1, 0] == 255


def test_dicom_window_uses_first_window(tmp_path):
    a = ramp(np.uint16, 1000)
    path = tmp_path / "w.dcm"
    write_dicom(path, a, attributes={"WindowCenter": [250, 800], "WindowWidth": [100, 50]})
    img = read_image(path)[:, :, 0]
    x = a[0]
    assert (img[0][x < 190] == 0).all() and (img[0][x > 310] == 255).all()  # saturated outside 200..300
    inside = (x > 210) & (x < 290)
    assert inside.any() and ((img[0][inside] > 0) & (img[0][inside] < 255)).all()
    assert np.all(np.diff(img[0].astype(int)) >= 0)
    no_voi = read_raw(path, apply_voi=False)
    assert np.array_equal(no_voi, a.astype(np.float32))


def test_dicom_voi_lut_sequence(tmp_path):
    from pydicom.dataset import Dataset

    a = ramp(np.uint16, 255)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    lut = np.where(np.arange(256) < 128, 0, 1000).astype(np.uint16)  # a threshold LUT
    item.add_new(0x00283006, "US", lut.tolist())  # LUTData
    path = tmp_path / "lut.dcm"
    write_dicom(
        path, a, attributes={"VOILUTSequence": [item], "WindowCenter": 20, "WindowWidth": 10}
    )  # the LUT takes precedence
    raw = read_raw(path)
    assert set(np.unique(raw)) == {0.0, 1000.0}
    assert np.array_equal(raw > 0, a >= 128)


def test_monochrome1_is_inverted_after_windowing(tmp_path):
    a = ramp(np.uint16, 1000)
    m2, m1 = tmp_path / "m2.dcm", tmp_path / "m1.dcm"
    window = {"WindowCenter": 400, "WindowWidth": 400}
    write_dicom(m2, a, attributes=window)
    write_dicom(m1, a, photometric="MONOCHROME1", attributes=window)
    i2, i1 = read_image(m2)[:, :, 0], read_image(m1)[:, :, 0]
    assert np.array_equal(i1.astype(int), 255 - i2.astype(int))
    assert i1[0, 0] == 255 and i1[0, -1] == 0  # low stored value = bright (bone) in MONOCHROME1
    # windowing happens before the inversion: saturation is at the high end of the ramp for both
    assert (i2[0][a[0] > 650] == 255).all() and (i1[0][a[0] > 650] == 0).all()


def test_dicom_detected_by_magic_without_extension(tmp_path):
    a = ramp(np.uint16, 500)
    write_dicom(tmp_path / "image.bin", a)
    assert is_dicom(tmp_path / "image.bin") and not is_dicom(tmp_path / "nothing.png")
    assert np.array_equal(read_raw(tmp_path / "image.bin"), a.astype(np.float32))


def test_error_names_file_and_survives_pickling(tmp_path):
    import pickle

    with pytest.raises(ImageReadError) as info:
        read_raw(tmp_path / "gone.png")
    err = pickle.loads(pickle.dumps(info.value))
    assert isinstance(err, OSError) and err.path == str(tmp_path / "gone.png") and str(err) == str(info.value)


def test_missing_and_empty_files(tmp_path):
    for name in ("none.png", "none.dcm"):
        with pytest.raises(ImageReadError, match=f"{name}.*no such file"):
            read_image(tmp_path / name)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png.*empty"):
        read_image(tmp_path / "empty.png")


def test_truncated_and_corrupt_files(tmp_path):
    a = ramp(np.uint16, 60000, shape=(64, 64))
    write_png(tmp_path / "ok.png", a)
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")
    cv2.imwrite(str(tmp_path / "ok.jpg"), (a >> 8).astype(np.uint8))
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg.*truncated"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "junk.png").write_bytes(b"not an image at all" * 10)
    with pytest.raises(ImageReadError, match="junk.png"):
        read_image(tmp_path / "junk.png")

    write_dicom(tmp_path / "ok.dcm", a)
    data = (tmp_path / "ok.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 1000])
    with pytest.raises(ImageReadError, match="cut.dcm.*(truncated|corrupt)"):
        read_image(tmp_path / "cut.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 50)
    with pytest.raises(ImageReadError, match="junk.dcm"):
        read_image(tmp_path / "junk.dcm")


def test_undecodable_transfer_syntax_names_uid_and_plugins(tmp_path):
    """MPEG2 pixel data has no decoder in pydicom, pylibjpeg or GDCM: a clear error names the syntax."""
    write_dicom(tmp_path / "ok.dcm", ramp(np.uint16, 500))
    ds = pydicom.dcmread(tmp_path / "ok.dcm")
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\0" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "video.dcm", enforce_file_format=True)
    with pytest.raises(
        ImageReadError, match=r"video.dcm.*1\.2\.840\.10008\.1\.2\.4\.100.*MPEG2.*pylibjpeg.*GDCM"
    ):
        read_image(tmp_path / "video.dcm")


def test_real_nih_png(shared_data):
    paths = sorted((shared_data / "nih-cxr14-sample" / "images").glob("*.png"))[:2]
    assert paths
    for p in paths:
        img = read_image(p)
        check_uint8_3ch(img, (1024, 1024))
        assert img.min() == 0 and img.max() == 255


def test_real_tbx11k_png(shared_data):
    paths = sorted((shared_data / "tbx11k-tb500" / "images").glob("*.png"))[:2]
    assert paths
    for p in paths:
        img = read_image(p)
        check_uint8_3ch(img, (512, 512))
        assert img.std() > 10


def test_the_dx_dicom_to_try_passes_dciodvfy(tmp_path):
    """write_dx_dicom (and the synthetic generator's --dicom) writes a DX For Presentation that
    dicom3tools' dciodvfy accepts without an error, and that reads back as written."""
    import shutil
    import subprocess

    from oxnet.data.io import DX_FOR_PRESENTATION, read_raw, write_dx_dicom

    img = (np.random.default_rng(0).random((64, 80)) * 4095).astype(np.uint16)
    path = tmp_path / "try.dcm"
    write_dx_dicom(path, img)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == DX_FOR_PRESENTATION == ds.file_meta.MediaStorageSOPClassUID
    assert np.array_equal(read_raw(path), img.astype(read_raw(path).dtype))
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy is not installed (Debian package dicom3tools)")
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
    assert errors == []
