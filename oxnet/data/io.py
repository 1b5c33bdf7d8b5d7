"""Reading chest X-ray images (PNG/JPEG 8/16-bit and DICOM) into the network's input format.

``read_image`` returns what the paper feeds to the network: the grey image min-max scaled per image to
[0, 255] (uint8) and replicated to three channels. ``read_raw`` returns the grey values before scaling.
"""

import os
import warnings

import cv2
import numpy as np

from oxnet.utils.atomic import atomic_open

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ImageReadError",
    "is_dicom",
    "read_raw",
    "read_image",
    "scale_to_uint8",
    "write_png",
    "write_dicom",
    "write_dx_dicom",
]

DICOM_EXTENSIONS = (".dcm", ".dicom")
#: Largest image (rows x columns x frames x samples) a reader decodes; a header claiming more is refused
#: before any pixel memory is allocated (a chest X-ray has about 3000 x 3000 = 9e6 pixels).
MAX_IMAGE_PIXELS = 2**26


class ImageReadError(IOError):
    """An image file that cannot be read; the message names the file and the problem."""

    def __init__(self, path, problem):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"cannot read image {self.path}: {problem}")

    def __reduce__(self):  # picklable across worker processes
        return type(self), (self.path, self.problem)


def is_dicom(path):
    """True for a ``.dcm``/``.dicom`` name or a file with the 'DICM' magic at byte 128."""
    if os.fspath(path).lower().endswith(DICOM_EXTENSIONS):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _check_pixels(path, width, height, what="the header"):
    """Refuse an image whose header claims no pixels or more than :data:`MAX_IMAGE_PIXELS`."""
    if width <= 0 or height <= 0:
        raise ImageReadError(path, f"{what} gives an empty image ({width}x{height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageReadError(
            path,
            f"{what} gives {width}x{height} = {width * height} pixels, beyond the "
            f"limit of {MAX_IMAGE_PIXELS} pixels (oxnet.data.io.MAX_IMAGE_PIXELS)",
        )


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, data):
    """Walk a PNG's chunks before decoding: OpenCV allocates what a corrupt length or size field claims."""
    buf = memoryview(data)
    pos, first = 8, True
    while pos < len(buf):
        if pos + 8 > len(buf):
            raise ImageReadError(path, f"truncated PNG (a chunk header is cut at byte {pos})")
        length = int.from_bytes(buf[pos : pos + 4], "big")
        kind = bytes(buf[pos + 4 : pos + 8])
        if pos + 12 + length > len(buf):
            raise ImageReadError(
                path,
                f"truncated or corrupt PNG (chunk {kind!r} at byte {pos} claims "
                f"{length} bytes, {len(buf) - pos - 12} are left)",
            )
        if first:
            if kind != b"IHDR" or length != 13:
                raise ImageReadError(path, "corrupt PNG (the first chunk is not a valid IHDR)")
            width = int.from_bytes(buf[pos + 8 : pos + 12], "big")
            height = int.from_bytes(buf[pos + 12 : pos + 16], "big")
            _check_pixels(path, width, height, "the PNG header")
            first = False
        if kind == b"IEND":
            return
        pos += 12 + length
    raise ImageReadError(path, "truncated PNG (no IEND chunk)")


def _check_other_header(path):
    """The size in a JPEG/TIFF/... header (through PIL, which reads only the header) against the limit;
    formats PIL does not know are left to OpenCV."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's decompression-bomb warning: the limit is checked here
            with Image.open(path) as im:
                width, height = im.size
    except Exception:  # not a format PIL reads: OpenCV decides
        return
    _check_pixels(path, width, height)


def _read_bitmap(path):
    """PNG/JPEG/TIFF/... through OpenCV, keeping the bit depth; colour is converted to grey."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(path, f"{type(e).__name__}: {e}") from e
    if data.size == 0:
        raise ImageReadError(path, "the file is empty")
    head = data[:8].tobytes()
    if head.startswith(b"\xff\xd8") and b"\xff\xd9" not in data[-1024:].tobytes():
        # libjpeg fills a truncated JPEG with grey and only warns, so the end-of-image marker is checked.
        raise ImageReadError(path, "truncated JPEG (no end-of-image marker)")
    if head == _PNG_SIGNATURE:
        _check_png(path, data)
    else:
        _check_other_header(path)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    except cv2.error as e:
        raise ImageReadError(path, f"OpenCV could not decode it ({e})") from e
    if img is None:
        kind = "PNG" if head.startswith(b"\x89PNG") else "image"
        raise ImageReadError(path, f"OpenCV could not decode it (corrupt, truncated or unsupported {kind})")
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        if img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif img.shape[2] == 1:
            img = img[:, :, 0]
        else:
            raise ImageReadError(path, f"unsupported number of channels {img.shape[2]}")
    return img.astype(np.float32)


def _dicom_int(ds, keyword, path, default=None):
    """An integer attribute of a DICOM header; a missing (without ``default``) or malformed one is an
    :class:`ImageReadError` naming the attribute."""
    try:
        value = ds.get(keyword, None)
        if value is None or value == "":
            if default is None:
                raise ImageReadError(path, f"the DICOM has no {keyword}")
            return default
        return int(value)
    except ImageReadError:
        raise
    except Exception as e:
        raise ImageReadError(path, f"invalid DICOM attribute {keyword} ({type(e).__name__}: {e})") from e


def _read_dicom(path, apply_voi=True):
    """DICOM through pydicom: Modality LUT (or rescale), VOI LUT (or the first window), MONOCHROME1
    inverted after windowing so that bone is bright."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path, force=True)
    except FileNotFoundError as e:
        raise ImageReadError(path, "no such file") from e
    except Exception as e:  # pydicom raises many types on bad input
        raise ImageReadError(path, f"invalid DICOM ({type(e).__name__}: {e})") from e
    if "PixelData" not in ds:
        raise ImageReadError(path, "the DICOM has no pixel data (corrupt or not an image)")
    rows, columns = _dicom_int(ds, "Rows", path), _dicom_int(ds, "Columns", path)
    frames = _dicom_int(ds, "NumberOfFrames", path, default=1)
    samples = _dicom_int(ds, "SamplesPerPixel", path, default=1)
    if frames > 1:
        raise ImageReadError(path, f"multi-frame DICOM ({frames} frames) is not a radiograph")
    if samples not in (1, 3):
        raise ImageReadError(path, f"unsupported SamplesPerPixel {samples} (1 or 3 expected)")
    _check_pixels(path, columns, rows, "the DICOM header (Columns x Rows)")
    if columns * rows * samples > MAX_IMAGE_PIXELS:
        raise ImageReadError(
            path,
            f"{columns}x{rows}x{samples} samples are beyond the limit of "
            f"{MAX_IMAGE_PIXELS} pixels (oxnet.data.io.MAX_IMAGE_PIXELS)",
        )
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError) as e:
        name = getattr(tsyntax, "name", "unknown")
        raise ImageReadError(
            path,
            f"pixel data in transfer syntax {tsyntax} ({name}) cannot be decoded here; install the "
            f"pylibjpeg plugins (pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle) or GDCM "
            f"(python-gdcm). Details: {e}",
        ) from e
    except Exception as e:
        raise ImageReadError(path, f"corrupt or truncated DICOM pixel data ({type(e).__name__}: {e})") from e

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim not in (2, 3) or arr.shape[:2] != (rows, columns) or arr.size == 0:
        raise ImageReadError(
            path, f"decoded pixel array has shape {arr.shape}, the header says {rows}x{columns}"
        )
    if samples == 3 or arr.ndim == 3:
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ImageReadError(path, f"SamplesPerPixel 3 but the pixel array has shape {arr.shape}")
        # pydicom converts YBR to RGB by default; a colour radiograph is reduced to grey.
        return cv2.cvtColor(np.ascontiguousarray(arr).astype(np.float32), cv2.COLOR_RGB2GRAY)
    if not photometric.startswith("MONOCHROME"):
        raise ImageReadError(path, f"unsupported PhotometricInterpretation {photometric}")
    try:
        arr = apply_modality_lut(arr, ds)
        if apply_voi:
            arr = apply_voi_lut(arr, ds, index=0)
    except Exception as e:
        raise ImageReadError(path, f"invalid Modality/VOI LUT attributes ({type(e).__name__}: {e})") from e
    arr = np.asarray(arr, dtype=np.float32)
    if photometric == "MONOCHROME1":
        arr = arr.max() + arr.min() - arr
    return arr


def read_raw(path, apply_voi=True):
    """Read a chest X-ray as float32 HxW grey values before any scaling.

    PNG/JPEG: the stored values (8 or 16 bit; colour converted to grey). DICOM: the modality values
    (Modality LUT or RescaleSlope/Intercept), then the VOI LUT or the first WindowCenter/WindowWidth
    when ``apply_voi``; MONOCHROME1 is inverted so that bone is bright.

    Raises:
        ImageReadError: missing, empty, corrupt or truncated files, DICOM without decodable pixel data or
            with malformed attributes, images whose header claims more than :data:`MAX_IMAGE_PIXELS`
            (refused before decoding).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageReadError(path, "no such file")
    if os.path.isdir(path):
        raise ImageReadError(path, "is a directory")
    img = _read_dicom(path, apply_voi) if is_dicom(path) else _read_bitmap(path)
    if img.ndim != 2 or img.size == 0:
        raise ImageReadError(path, f"unexpected pixel array shape {img.shape}")
    if not np.isfinite(img).all():
        raise ImageReadError(path, "pixel values contain NaN or infinity")
    return img


def scale_to_uint8(img):
    """Per-image min-max scaling to uint8 (a constant image becomes zeros)."""
    img = np.asarray(img, dtype=np.float32)
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return np.zeros(img.shape, np.uint8)
    return np.rint((img - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def read_image(path):
    """Read a chest X-ray as uint8 HxWx3 (contiguous): grey min-max scaled per image, replicated to 3
    channels, as the paper prepares its inputs. Raises :class:`ImageReadError` naming the file."""
    grey = scale_to_uint8(read_raw(path))
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def write_png(path, array):
    """Write a uint8 or uint16 array (HxW or HxWx3 in BGR) as PNG atomically."""
    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"write_png({path}): expected uint8 or uint16, got {array.dtype}")
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"could not encode {path} as PNG (shape {array.shape})")
    with atomic_open(path, "wb") as f:
        f.write(buf.tobytes())


def write_dicom(path, array, photometric="MONOCHROME2", bits_stored=None, attributes=None):
    """Write a grey uint8/uint16 array as an uncompressed (Explicit VR Little Endian) Secondary Capture
    DICOM with a proper file meta header, atomically.

    Args:
        photometric: "MONOCHROME2" (high = bright) or "MONOCHROME1" (high = dark); values are stored as
            given.
        bits_stored: defaults to 8 for uint8 and 16 for uint16.
        attributes: dict of extra top-level attributes (keywords), e.g. RescaleSlope, WindowCenter.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    array = np.ascontiguousarray(array)
    if array.ndim != 2 or array.dtype not in (np.uint8, np.uint16):
        raise TypeError(
            f"write_dicom({path}): expected a 2-D uint8/uint16 array, got {array.dtype} {array.shape}"
        )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(os.fspath(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = array.shape
    bits = 8 if array.dtype == np.uint8 else 16
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for key, value in (attributes or {}).items():
        setattr(ds, key, value)
    meta.MediaStorageSOPClassUID = ds.SOPClassUID  # an attribute may set another SOP class
    ds.PixelData = array.tobytes()
    with atomic_open(path, "wb") as f:
        ds.save_as(f, enforce_file_format=True)


#: Digital X-Ray Image Storage - For Presentation.
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def write_dx_dicom(
    path, array, bits_stored=12, patient_id="SYN-0001", patient_name="Synthetic^Patient", **attributes
):
    """Write a grey uint16 chest X-ray as a Digital X-Ray Image For Presentation (PA chest) with
    synthetic patient and study attributes, complete enough for ``dciodvfy`` (dicom3tools) to report
    no error: what to try the service, the SR and the PACS bridge with. ``attributes`` add or
    override top-level attributes (keywords)."""
    from pydicom.dataset import Dataset

    def code(value, scheme, meaning):
        c = Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
        return c

    top = (1 << bits_stored) - 1
    attrs = dict(
        SOPClassUID=DX_FOR_PRESENTATION,
        SpecificCharacterSet="ISO_IR 100",
        PatientName=patient_name,
        PatientID=patient_id,
        PatientBirthDate="19700101",
        PatientSex="O",
        StudyDate="20260101",
        StudyTime="090000",
        ReferringPhysicianName="",
        StudyID="1",
        AccessionNumber="SYN1",
        SeriesNumber="1",
        InstanceNumber="1",
        PatientOrientation=["P", "F"],
        ContentDate="20260101",
        ContentTime="090000",
        Manufacturer="OXnet synthetic",
        PresentationIntentType="FOR PRESENTATION",
        BodyPartExamined="CHEST",
        AnatomicRegionSequence=[code("43799004", "SCT", "Chest")],
        ImageLaterality="U",
        ImageType=["DERIVED", "PRIMARY"],
        PixelIntensityRelationship="LOG",
        PixelIntensityRelationshipSign=1,
        RescaleIntercept="0",
        RescaleSlope="1",
        RescaleType="US",
        PresentationLUTShape="IDENTITY",
        LossyImageCompression="00",
        BurnedInAnnotation="NO",
        DetectorType="DIRECT",
        ImagerPixelSpacing=[0.5, 0.5],
        WindowCenter=str((top + 1) // 2),
        WindowWidth=str(top + 1),
        AcquisitionContextSequence=[],
        ViewPosition="PA",
        ViewCodeSequence=[code("399348003", "SCT", "postero-anterior")],
        PatientPosition="",
        PositionerType="",
    )
    attrs.update(attributes)
    write_dicom(path, array, bits_stored=bits_stored, attributes=attrs)
