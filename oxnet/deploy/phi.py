"""Keep patient identifiers out of messages: :func:`redact` removes a DICOM dataset's identifying
values from a text (an error message, a log line) before it leaves the process.

The service's error bodies and the PACS bridge's log lines and state file pass through it; only the
SR written for the study carries the patient module, as DICOM requires.
"""

__all__ = ["PHI_KEYWORDS", "REDACTED", "redact"]

REDACTED = "[redacted]"
#: Attributes of the patient and the study that identify a person (DICOM PS3.15 E.1, the ones an X-ray
#: header commonly holds).
PHI_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MilitaryRank",
    "MedicalRecordLocator",
    "AccessionNumber",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
)


def _values(ds):
    for keyword in PHI_KEYWORDS:
        try:
            value = ds.get(keyword, None)
        except Exception:  # a value pydicom cannot decode is no value to redact
            continue
        if value is None:
            continue
        items = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
        for item in items:
            text = str(item).strip()
            if len(text) >= 3:
                yield text
                # a person name's components (family^given^...) may appear on their own
                yield from (p for p in text.replace("=", "^").split("^") if len(p.strip()) >= 3)


def redact(text, ds):
    """``text`` with every identifying value of the DICOM dataset ``ds`` (:data:`PHI_KEYWORDS`)
    replaced by ``[redacted]``; longest values first. ``ds`` None: ``text`` unchanged."""
    if ds is None or not text:
        return text
    for value in sorted(set(_values(ds)), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text
