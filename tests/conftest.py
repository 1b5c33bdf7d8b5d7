import os
import pathlib

import pytest

import oxnet  # noqa: F401  (applies compatibility shims before detectron2 is imported)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("OXNET_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    """Path of the real-data folder ``../shared/data``; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set OXNET_SHARED_DATA to use another)")
    return SHARED_DATA
