"""Imports only go down: every import of an ``oxnet`` module obeys the layer order written in the
README's Layout section, and no two modules import each other, directly or through others."""

import ast
import os
import re

from oxnet.testing import REPO_ROOT, read_text

PACKAGE = os.path.join(REPO_ROOT, "oxnet")


def layer_order():
    """The layers, top first, from the README's ``layers:`` line under its Layout heading."""
    layout = read_text(os.path.join(REPO_ROOT, "README.md")).split("\n## Layout", 1)[1]
    match = re.search(r"^layers: (.+)$", layout, re.M)
    assert match, "README.md's Layout section has no 'layers: a > b > ...' line"
    return [name.strip() for name in match.group(1).split(">")]


def module_name(path):
    rel = os.path.relpath(path, REPO_ROOT)[: -len(".py")].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def imported_modules(path, module):
    """The ``oxnet`` modules one file imports, at module level or inside functions."""
    is_package = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(ast.parse(read_text(path), path)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            # ``from pkg import submodule`` imports the submodule too
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if os.path.exists(os.path.join(REPO_ROOT, *sub.split(".")) + ".py") or os.path.isdir(
                    os.path.join(REPO_ROOT, *sub.split("."))
                ):
                    found.add(sub)
    return {m for m in found if m == "oxnet" or m.startswith("oxnet.")}


def import_graph(root=PACKAGE):
    graph = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = module_name(path) if root == PACKAGE else name[:-3]
                graph[module] = (path, imported_modules(path, module))
    return graph


def layer_of(module, layers):
    """The layer of a module: its first name below ``oxnet`` (the package itself is ``_compat``'s)."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "_compat"
    if name not in layers:
        raise AssertionError(f"{module} is in no layer of README.md's Layout line {' > '.join(layers)}")
    return layers.index(name)


def upward_imports(graph, layers):
    problems = []
    for module, (path, targets) in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target, layers) < layer_of(module, layers):
                problems.append(
                    f"{os.path.relpath(path, REPO_ROOT)}: {module} imports {target}, a higher layer"
                )
    return problems


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, (None, ()))[1]:
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_import_goes_down_the_readme_layers():
    layers = layer_order()
    assert "_compat" in layers and "utils" in layers
    assert upward_imports(import_graph(), layers) == []


def test_no_import_cycle():
    # A package's __init__ that imports its own submodules is not a cycle of the design: drop the
    # edges from a submodule up to its own package.
    graph = {
        m: (path, {t for t in targets if not m.startswith(t + ".")})
        for m, (path, targets) in import_graph().items()
    }
    assert cycles(graph) == []


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path):
    layers = ["engine", "modeling", "utils", "_compat"]
    graph = {
        "oxnet.modeling.a": ("a.py", {"oxnet.engine.x", "oxnet.utils.y"}),
        "oxnet.engine.x": ("x.py", {"oxnet.modeling.a"}),
        "oxnet.utils.y": ("y.py", {"oxnet"}),
    }
    assert upward_imports(graph, layers) == ["a.py: oxnet.modeling.a imports oxnet.engine.x, a higher layer"]
    assert cycles(graph) == [["oxnet.engine.x", "oxnet.modeling.a"]]
    # relative imports resolve to absolute names, submodules named by ``from pkg import sub`` count
    path = tmp_path / "m.py"
    path.write_text("from .. import config\nfrom ..modeling import meta_arch\nimport os\n")
    assert imported_modules(str(path), "oxnet.engine.m") == {
        "oxnet",
        "oxnet.config",
        "oxnet.modeling",
        "oxnet.modeling.meta_arch",
    }
