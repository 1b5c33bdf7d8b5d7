import pytest


@pytest.fixture(scope="session")
def nih_public(shared_data):
    """The complete NIH label files imported once (no images): ``(coco, report)``."""
    from oxnet.data.importers import load_nih

    d = shared_data / "public-annotations" / "nih-cxr14"
    return load_nih(
        d / "Data_Entry_2017_v2020.csv.gz", d / "BBox_List_2017.csv.gz", allow_missing_images=True
    )
