#!/usr/bin/env python
"""Write docs/config.md: every ``OXNET.*`` config key with its default and meaning, and the methods of
``OXNET.METHOD`` with their components, generated from ``oxnet/config.py`` and ``oxnet/methods.py``.

A key's meaning is the comment above it in ``add_oxnet_config`` (consecutive comment lines) and the
comment at the end of its line; a section's (``_C.OXNET.X = CN()``) is the comment above it. Defaults
come from the config that ``add_oxnet_config`` builds.

    python tools/gen_config_docs.py            # rewrite docs/config.md
    python tools/gen_config_docs.py --check    # exit 1 when docs/config.md is not up to date
"""

import argparse
import ast
import io
import os
import re
import sys
import tokenize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import oxnet  # noqa: E402,F401  (compatibility shims before detectron2)
from oxnet import config as oxnet_config  # noqa: E402
from oxnet import methods as oxnet_methods  # noqa: E402

DOCS = os.path.join(REPO, "docs", "config.md")
CONFIG_SOURCE = os.path.join(REPO, "oxnet", "config.py")


def _comments(source):
    """{line: (comment text without '#', whether the line holds only the comment)}."""
    lines = source.splitlines()
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row = tok.start[0]
            text = tok.string.lstrip("#").lstrip(":").strip()
            text = re.sub(r":\w+:`", "`", text).replace("``", "`")  # reST roles and literals to Markdown
            out[row] = (text, lines[row - 1].lstrip().startswith("#"))
    return out


def _block_above(comments, line):
    """The comment lines directly above ``line`` (no blank line between), joined."""
    block = []
    row = line - 1
    while row in comments and comments[row][1]:
        block.append(comments[row][0])
        row -= 1
    return " ".join(reversed(block)).strip()


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def parse_config_source(source):
    """Parse ``oxnet/config.py``: a list of ``(key, description, is_section)`` in the order
    ``add_oxnet_config`` sets them (``key`` without the leading ``_C.``, e.g. ``OXNET.GPA.MARGIN``)."""
    tree = ast.parse(source)
    comments = _comments(source)
    func = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "add_oxnet_config":
            func = node
    if func is None:
        raise ValueError(f"{CONFIG_SOURCE}: no add_oxnet_config function")
    keys = []
    for node in func.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        name = _dotted(node.targets[0])
        if name is None or not name.startswith("_C.OXNET"):
            continue
        key = name[len("_C.") :]
        inline = [
            comments[r][0]
            for r in range(node.lineno, node.end_lineno + 1)
            if r in comments and not comments[r][1]
        ]
        text = " ".join([_block_above(comments, node.lineno)] + inline).strip()
        section = isinstance(node.value, ast.Call) and _dotted(node.value.func) == "CN"
        keys.append((key, text, section))
    return keys


def methods_doc():
    """The first paragraph of :mod:`oxnet.methods`' docstring, on one line, Sphinx roles removed."""
    first = oxnet_methods.__doc__.strip().split("\n\n")[1]
    text = " ".join(first.split())
    return re.sub(r":\w+:`~?", "`", text).replace("``", "`")


def config_defaults():
    """{key: default} of every leaf ``OXNET.*`` key, from ``add_oxnet_config``."""
    from detectron2.config import CfgNode

    cfg = CfgNode()
    oxnet_config.add_oxnet_config(cfg)
    out = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, CfgNode):
                walk(v, f"{prefix}{k}.")
            else:
                out[prefix + k] = v

    walk(cfg.OXNET, "OXNET.")
    return out


def _default(value):
    return f"`{value!r}`"


def _cell(text):
    return text.replace("|", "\\|") or "-"


def render():
    """The text of docs/config.md."""
    with open(CONFIG_SOURCE, encoding="utf-8") as f:
        source = f.read()
    keys = parse_config_source(source)
    defaults = config_defaults()
    parsed = {k for k, _, section in keys if not section}
    if parsed != set(defaults):
        raise ValueError(
            f"{CONFIG_SOURCE}: keys set other than as `_C.OXNET... = value` in "
            f"add_oxnet_config: {sorted(set(defaults) ^ parsed)}"
        )
    undocumented = [k for k, text, _ in keys if not text and k != "OXNET"]
    if undocumented:
        raise ValueError(
            f"{CONFIG_SOURCE}: add a comment above or beside {', '.join(undocumented)} "
            "in add_oxnet_config (it is the key's documentation)"
        )

    lines = [
        "# OXnet configuration keys",
        "",
        "<!-- Generated from oxnet/config.py and oxnet/methods.py by tools/gen_config_docs.py; "
        "do not edit by hand. -->",
        "",
        "`oxnet.config.add_oxnet_config(cfg)` adds the `OXNET.*` keys below to detectron2's config. Set",
        "them in a YAML config (`OXNET: {METHOD: daa}`, see `configs/`) or after the command line's",
        "options (`python train_net.py --config-file configs/oxnet_R101.yaml OXNET.METHOD daa`).",
        "detectron2's own keys (`MODEL.*`, `SOLVER.*`, `DATASETS.*`, ...) are documented at",
        "<https://detectron2.readthedocs.io/en/v0.6/modules/config.html#config-references>.",
        "",
        "## Methods (`OXNET.METHOD`)",
        "",
        methods_doc(),
        "",
        "| `OXNET.METHOD` | " + " | ".join(oxnet_methods.COMPONENT_TITLES.values()) + " | needs |",
        "|---" * (len(oxnet_methods.COMPONENT_TITLES) + 2) + "|",
    ]
    for method, parts in oxnet_methods.describe_methods():
        m = oxnet_methods.get_method(method)
        needs = ", ".join(f"`{k} {v}`" for k, v in m.requires) + (
            f" ({m.config_file})" if m.config_file else ""
        )
        lines.append(f"| `{method}` | " + " | ".join(parts.values()) + f" | {needs or '-'} |")
    lines += ["", "`python train_net.py --list-methods` prints this table.", "", "## Keys", ""]

    sections = [("OXNET", "")] + [(k, text) for k, text, section in keys if section and k != "OXNET"]
    for name, text in sections:
        members = [(k, t) for k, t, section in keys if not section and k.rsplit(".", 1)[0] == name]
        lines += [f"### `{name}`", ""]
        if text:
            lines += [text, ""]
        lines += ["| key | default | meaning |", "|---|---|---|"]
        lines += [f"| `{k}` | {_cell(_default(defaults[k]))} | {_cell(t)} |" for k, t in members]
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when docs/config.md differs from the generated text",
    )
    parser.add_argument("--out", default=DOCS, help="where to write (default: docs/config.md)")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = None
        if os.path.exists(args.out):
            with open(args.out, encoding="utf-8") as f:
                current = f.read()
        if current != text:
            print(f"{args.out} is not up to date: run python tools/gen_config_docs.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
