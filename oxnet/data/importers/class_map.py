"""Class vocabularies: rename, merge or drop an importer's source classes with a YAML class map.

A class map file (``datasets/class_maps/*.yaml``)::

    targets: paper          # optional: the output lists the nine paper classes (in their order) first
    map:                    # source name -> target name; several sources to one target merge them
      Effusion: pleural effusion
      Nodule: nodule
    drop: [Hernia]          # source classes removed with their boxes and labels

A source class in neither ``map`` nor ``drop`` is *unmapped*: it is kept under its own name
(``unmapped="keep"``), dropped with counts (``"drop"``) or an error (``"error"``, strict mode).

A ``map`` or ``drop`` entry naming a class the input does not have (a typo such as ``Cardiomegally``)
is an error listing the unknown names and the classes the input has (``absent_sources="error"``).
``absent_sources="ignore"`` accepts them, for a class map shared between datasets or a small sample
in which some source classes do not occur; they are reported with the rule ``absent``.

Merged image labels: positive if any merged source is positive, else uncertain if any is uncertain,
else negative if all merged sources present in the image are negative.
"""

import difflib
import os
from collections import Counter, defaultdict

import yaml

from oxnet.config import PAPER_CLASSES

from .common import ImportDataError

__all__ = ["ClassMap", "load_class_map", "apply_class_map", "UNMAPPED_POLICIES", "ABSENT_POLICIES"]

UNMAPPED_POLICIES = ("keep", "drop", "error")
ABSENT_POLICIES = ("error", "ignore")


class ClassMap:
    """A parsed class map: ``mapping`` {source: target}, ``drop`` (set), ``targets`` (tuple or None);
    ``lines`` {source: 1-based line of its entry in the file} when read from a file."""

    def __init__(self, mapping=None, drop=(), targets=None, path="<class map>", lines=None):
        self.mapping = dict(mapping or {})
        self.drop = set(drop)
        self.targets = tuple(targets) if targets else None
        self.path = path
        self.lines = dict(lines or {})
        both = sorted(set(self.mapping) & self.drop)
        if both:
            raise ImportDataError(path, None, f"classes {both} are both mapped and dropped")
        if self.targets is not None:
            unknown = sorted(set(self.mapping.values()) - set(self.targets))
            if unknown:
                raise ImportDataError(
                    path, None, f"targets {unknown} are not in the target classes {list(self.targets)}"
                )


def load_class_map(path):
    """Read a class-map YAML file (see the module docstring)."""
    path = os.fspath(path)
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    try:
        spec = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise ImportDataError(path, None if line is None else line + 1, f"invalid YAML: {e}") from None
    if not isinstance(spec, dict):
        raise ImportDataError(path, None, "a class map must be a mapping with keys 'map', 'drop', 'targets'")
    unknown_keys = sorted(set(spec) - {"map", "drop", "targets", "source", "description"})
    if unknown_keys:
        raise ImportDataError(path, None, f"unknown keys {unknown_keys} (expected map, drop, targets)")
    mapping = spec.get("map") or {}
    drop = spec.get("drop") or []
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise ImportDataError(path, None, "'map' must map source class names to target class names")
    if not isinstance(drop, list) or not all(isinstance(d, str) for d in drop):
        raise ImportDataError(path, None, "'drop' must be a list of source class names")
    targets = spec.get("targets")
    if targets == "paper":
        targets = PAPER_CLASSES
    elif targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise ImportDataError(path, None, "'targets' must be 'paper' or a list of class names")
    return ClassMap(mapping, drop, targets, path, lines=_entry_lines(text))


def _entry_lines(text):
    """{source class: 1-based line} of the ``map`` keys and ``drop`` items of a class-map YAML text."""
    root = yaml.compose(text)
    lines = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        if key.value == "map" and isinstance(value, yaml.MappingNode):
            for k, _ in value.value:
                lines.setdefault(k.value, k.start_mark.line + 1)
        elif key.value == "drop" and isinstance(value, yaml.SequenceNode):
            for item in value.value:
                lines.setdefault(item.value, item.start_mark.line + 1)
    return lines


def _check_sources(class_map, sources):
    """Raise :class:`ImportDataError` when the class map names source classes absent from ``sources``."""
    named = list(class_map.mapping) + sorted(class_map.drop)
    unknown = [s for s in named if s not in sources]
    if not unknown:
        return
    unknown.sort(key=lambda s: (class_map.lines.get(s, 0), s))
    details = []
    for s in unknown:
        kind = "map" if s in class_map.mapping else "drop"
        line = class_map.lines.get(s)
        text = f"{s!r} ({kind}" + (f", line {line})" if line else ")")
        close = difflib.get_close_matches(s, sources, n=1)
        if close:
            text += f", did you mean {close[0]!r}?"
        details.append(text)
    raise ImportDataError(
        class_map.path,
        class_map.lines.get(unknown[0]),
        f"{len(unknown)} source classes of the class map are not in the data: {'; '.join(details)}. "
        f"The data has the classes {sorted(sources)}. A class map shared with other datasets may name "
        "classes this input lacks: accept them with --allow-absent-classes (absent_sources='ignore')",
    )


def _merge_labels(values):
    if 1 in values:
        return 1
    if -1 in values:
        return -1
    return 0


def apply_class_map(coco, class_map, unmapped="keep", class_rows=None, absent_sources="error"):
    """Rename, merge and drop the classes of an OXnet-COCO dict (in place of a copy).

    Args:
        coco (dict): an importer's output in the source vocabulary.
        class_map (ClassMap or None): ``None`` applies only the ``unmapped`` policy to every class.
        unmapped (str): "keep", "drop" or "error" for classes the map does not name.
        class_rows (dict or None): {source class: (file, row)} of a first occurrence, for error messages.
        absent_sources (str): "error" (default): a ``map`` or ``drop`` entry naming a class that is not
            in ``coco`` raises :class:`ImportDataError` (the class map's file and the entry's line)
            listing the unknown names and the classes ``coco`` has; "ignore": such entries are
            reported with the rule ``absent``.

    Returns:
        (dict, list[dict]): the new OXnet-COCO dict and one report row per source class:
        ``{"source", "target", "rule", "boxes", "labels"}`` where ``rule`` is one of ``rename``,
        ``merge``, ``keep``, ``drop``, ``drop-unmapped`` (then rows with ``absent`` for the class
        map's classes missing from the input); ``boxes``, ``labels`` and ``positive_labels`` count the
        boxes, the image labels (any value) and the positive image labels it touched.
    """
    if unmapped not in UNMAPPED_POLICIES:
        raise ValueError(f"unmapped must be one of {UNMAPPED_POLICIES}, got {unmapped!r}")
    if absent_sources not in ABSENT_POLICIES:
        raise ValueError(f"absent_sources must be one of {ABSENT_POLICIES}, got {absent_sources!r}")
    class_map = class_map or ClassMap()
    id_to_name = {c["id"]: c["name"] for c in coco["categories"]}
    sources = [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    if absent_sources == "error":
        _check_sources(class_map, sources)

    boxes = Counter(id_to_name[a["category_id"]] for a in coco["annotations"])
    labels = Counter(k for img in coco["images"] for k in img.get("image_labels", {}))
    positives = Counter(k for img in coco["images"] for k, v in img.get("image_labels", {}).items() if v == 1)

    target_of, rules, unmapped_found = _targets(class_map, sources, unmapped)
    if unmapped == "error" and unmapped_found:
        _raise_unmapped(unmapped_found, class_map, class_rows or {}, boxes, labels)

    # Output vocabulary: the declared targets first (all of them), then the other kept classes.
    names = list(class_map.targets or [])
    for s in sources:
        t = target_of[s]
        if t is not None and t not in names:
            names.append(t)
    new_id = {n: i + 1 for i, n in enumerate(names)}
    src_to_new = {s: new_id[t] for s, t in target_of.items() if t is not None}

    annotations = []
    for a in coco["annotations"]:
        s = id_to_name[a["category_id"]]
        if s in src_to_new:
            annotations.append(dict(a, category_id=src_to_new[s], id=len(annotations) + 1))
    images = [_map_image_labels(img, target_of) for img in coco["images"]]
    out = dict(
        coco, images=images, annotations=annotations, categories=[{"id": new_id[n], "name": n} for n in names]
    )
    return out, _report_rows(class_map, sources, target_of, rules, (boxes, labels, positives))


def _targets(class_map, sources, unmapped):
    """Where each source class goes under ``class_map`` and the ``unmapped`` policy, and by which rule.

    Returns:
        (dict, dict, list): {source: target name or None (dropped)}, {source: rule} and the unmapped
        sources in order.
    """
    target_of = {}
    rules = {}
    unmapped_found = []
    for s in sources:
        if s in class_map.drop:
            target_of[s], rules[s] = None, "drop"
        elif s in class_map.mapping:
            target_of[s] = class_map.mapping[s]
        else:
            unmapped_found.append(s)
            if unmapped == "drop":
                target_of[s], rules[s] = None, "drop-unmapped"
            else:
                target_of[s], rules[s] = s, "keep"
    # A mapped class merges when its target also receives another class (mapped or kept), else renames.
    merged = Counter(t for s, t in target_of.items() if t is not None and s in class_map.mapping)
    for s in sources:
        if s in class_map.mapping:
            t = class_map.mapping[s]
            rules[s] = "merge" if merged[t] > 1 or (t in sources and t not in class_map.mapping) else "rename"
    return target_of, rules, unmapped_found


def _report_rows(class_map, sources, target_of, rules, counts):
    """:func:`apply_class_map`'s report: a row per source class (``counts``: Counters of its boxes,
    labels and positive labels), then an ``absent`` row per class-map class not in ``sources``."""
    boxes, labels, positives = counts
    report = [
        {
            "source": s,
            "target": target_of[s],
            "rule": rules[s],
            "boxes": boxes[s],
            "labels": labels[s],
            "positive_labels": positives[s],
        }
        for s in sources
    ]
    absent = [s for s in list(class_map.mapping) + sorted(class_map.drop) if s not in sources]
    report += [
        {
            "source": s,
            "target": class_map.mapping.get(s),
            "rule": "absent",
            "boxes": 0,
            "labels": 0,
            "positive_labels": 0,
        }
        for s in absent
    ]
    return report


def _raise_unmapped(unmapped_found, class_map, rows, boxes, labels):
    """Strict mode: raise :class:`ImportDataError` at the first unmapped class's first row (``rows``),
    listing every unmapped class with its box and label counts and first row."""
    first = rows.get(unmapped_found[0], (class_map.path, None))

    def where(s):
        if s not in rows:
            return ""
        file, row = rows[s]
        row = row if isinstance(row, str) else f"row {row}"
        return f", first at {row}" if file == first[0] else f", first at {file}, {row}"

    details = "; ".join(f"{s!r} ({boxes[s]} boxes, {labels[s]} labels{where(s)})" for s in unmapped_found)
    raise ImportDataError(
        first[0],
        first[1],
        f"{len(unmapped_found)} classes are not in the class map {class_map.path} (strict mode): {details}",
    )


def _map_image_labels(img, target_of):
    """``img`` with its ``image_labels`` renamed to the targets and merged (:func:`_merge_labels`),
    dropped classes removed; a full image left without labels loses the field."""
    if "image_labels" not in img:
        return img
    grouped = defaultdict(list)
    for k, v in img["image_labels"].items():
        t = target_of.get(k)
        if t is not None:
            grouped[t].append(v)
    img = dict(img, image_labels={t: _merge_labels(v) for t, v in grouped.items()})
    if img["supervision"] == "full" and not img["image_labels"]:
        del img["image_labels"]
    return img


def format_class_report(report):
    """A human-readable table of :func:`apply_class_map`'s report."""
    lines = [
        f"{'source class':32s} {'rule':14s} {'target':24s} {'boxes':>8s} {'labels':>8s} {'positive':>8s}"
    ]
    for r in report:
        lines.append(
            f"{r['source'][:32]:32s} {r['rule']:14s} {str(r['target'] or '-')[:24]:24s} "
            f"{r['boxes']:8d} {r['labels']:8d} {r['positive_labels']:8d}"
        )
    return "\n".join(lines)
