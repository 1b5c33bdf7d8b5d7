"""Class maps naming source classes the input does not have: an error by default, accepted on request."""

import importlib.util
import pathlib

import pytest

from oxnet.data.importers import ImportDataError, apply_class_map, load_class_map, load_nih
from oxnet.data.importers.cli import run

DATASETS = pathlib.Path(__file__).resolve().parents[3] / "datasets"

DATA_ENTRY = (
    "Image Index,Finding Labels,Follow-up #,Patient ID\n"
    "a.png,Cardiomegaly,0,1\n"
    "b.png,No Finding,0,2\n"
    "c.png,Effusion|Mass,0,3\n"
)


@pytest.fixture
def nih(tmp_path):
    de = tmp_path / "Data_Entry.csv"
    de.write_text(DATA_ENTRY)
    return load_nih(de, allow_missing_images=True)[0], de


def _class_map(tmp_path, text):
    path = tmp_path / "map.yaml"
    path.write_text(text)
    return load_class_map(path)


def test_misspelled_source_is_an_error(tmp_path, nih):
    coco, _ = nih
    class_map = _class_map(
        tmp_path,
        "targets: paper\nmap:\n  Effusion: pleural effusion\n  Cardiomegally: cardiomegaly\ndrop: [Mass]\n",
    )
    with pytest.raises(ImportDataError) as info:
        apply_class_map(coco, class_map)
    message = str(info.value)
    assert message.startswith(
        f"{tmp_path / 'map.yaml'}, row 4: 1 source classes of the class map are not in the data"
    )
    assert "'Cardiomegally' (map, line 4), did you mean 'Cardiomegaly'?" in message
    assert "The data has the classes ['Cardiomegaly', 'Effusion', 'Mass']" in message
    assert "--allow-absent-classes" in message


def test_unknown_drop_entries_are_listed_too(tmp_path, nih):
    coco, _ = nih
    class_map = _class_map(tmp_path, "map:\n  Effusion: pleural effusion\ndrop:\n  - Hernia\n  - Nodule\n")
    unknown = r"map.yaml, row 4: 2 source classes .*'Hernia' \(drop, line 4\); 'Nodule' \(drop, line 5\)"
    with pytest.raises(ImportDataError, match=unknown):
        apply_class_map(coco, class_map, unmapped="drop")


def test_absent_sources_ignored_on_request(tmp_path, nih):
    coco, _ = nih
    class_map = _class_map(
        tmp_path, "targets: paper\nmap:\n  Cardiomegaly: cardiomegaly\n  Pneumothorax: pneumothorax\n"
    )
    out, report = apply_class_map(coco, class_map, absent_sources="ignore")
    rows = {r["source"]: r for r in report}
    assert rows["Pneumothorax"] == {
        "source": "Pneumothorax",
        "target": "pneumothorax",
        "rule": "absent",
        "boxes": 0,
        "labels": 0,
        "positive_labels": 0,
    }
    assert rows["Cardiomegaly"]["rule"] == "rename"
    assert sum(img["image_labels"].get("cardiomegaly") == 1 for img in out["images"]) == 1
    with pytest.raises(ValueError, match="absent_sources must be one of"):
        apply_class_map(coco, class_map, absent_sources="keep")


def test_shipped_class_maps_load_with_entry_lines():
    for path in sorted(DATASETS.glob("class_maps/*.yaml")):
        class_map = load_class_map(path)
        lines = path.read_text().splitlines()
        named = list(class_map.mapping) + sorted(class_map.drop)
        assert named and set(class_map.lines) == set(named), path
        assert all(s in lines[class_map.lines[s] - 1] for s in named), path


def _prepare_nih():
    spec = importlib.util.spec_from_file_location("prepare_nih_class_map", DATASETS / "prepare_nih.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_importer_cli_refuses_typo_and_accepts_absent_classes_with_flag(tmp_path, nih, capsys):
    _, de = nih
    script = _prepare_nih()
    typo = tmp_path / "typo.yaml"
    typo.write_text("targets: paper\nmap:\n  Cardiomegally: cardiomegaly\n")
    out = tmp_path / "out.json"
    argv = ["--data-entry", str(de), "--allow-missing-images", "--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        run(script.main, argv + ["--class-map", str(typo)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{typo}, row 3:" in err and "'Cardiomegally'" in err and not out.exists()

    # the shipped NIH map names classes (Nodule, Pneumonia, Pneumothorax) this three-image input lacks
    shipped = ["--class-map", str(DATASETS / "class_maps" / "nih.yaml")]
    with pytest.raises(SystemExit):
        run(script.main, argv + shipped)
    assert "'Pneumothorax' (map, line" in capsys.readouterr().err
    run(script.main, argv + shipped + ["--allow-absent-classes"])
    printed = capsys.readouterr().out
    assert out.exists() and "Pneumothorax" in printed and "absent" in printed
