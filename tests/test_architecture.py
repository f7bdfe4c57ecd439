"""The house rules of the package (issue 34), read from the source with ``ast`` (no MindSpore
import, well under a second): no import circle, no import from a lower room up to a higher
one, no module over 500 lines, argparse only in the front door (``mindyolox/commands/``),
every bench script on the one harness. Imports inside functions count like module-level
ones: they are how a circle hides (and MindSpore's compile cache does not follow them)."""
import ast
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "mindyolox"
MAX_LINES = 500

# The rooms, low to high (docs/architecture.md). A module may import from its own level or any
# lower one, never from a higher one. ``mindyolox/__init__.py`` (the package's public names)
# sits with the commands; the recipe (``config``: YAML -> checked dict, ``options``: device
# options) is read before anything is built, so it sits below the building blocks that take it;
# ``convert`` (official weights -> mindyolox) sits with the models.
ROOMS = [
    ("errors", "utils", "ops"),
    ("config", "options"),
    ("models", "losses", "data", "convert"),
    ("runtime",),
    ("training", "evaluation", "predict", "track", "deploy"),
    ("commands", "__init__"),
]


def _modules():
    """``{dotted module name: path}`` of every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name):
    return MODULES[name].name == "__init__.py"


def _imports(name):
    """``[(imported mindyolox module, line)]`` of module ``name``, at any depth of its code.
    ``from P import n`` is module ``P.n`` when that is a module, else ``P`` itself."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name if _is_package(name) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [(stem, a.name) for a in node.names]
        else:
            continue
        for stem, item in targets:
            if item is not None and f"{stem}.{item}" in MODULES:
                found.append((f"{stem}.{item}", node.lineno))
            elif stem in MODULES:
                found.append((stem, node.lineno))
            elif stem.startswith("mindyolox."):
                while stem and stem not in MODULES:   # import a.b.c -> the deepest module of it
                    stem = stem.rpartition(".")[0]
                if stem:
                    found.append((stem, node.lineno))
    return found


def _graph():
    return {name: {t for t, _ in _imports(name) if t != name} for name in MODULES}


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, comps, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))
    return comps


def _room(name):
    """The room of a module: the first part below ``mindyolox`` (``mindyolox.options`` ->
    ``options``, the package itself -> ``__init__``)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _level(room):
    for level, rooms in enumerate(ROOMS):
        if room in rooms:
            return level
    raise AssertionError(f"room {room!r} is in no level of ROOMS (tests/test_architecture.py): place it")


def test_the_import_scanner_sees_what_it_must():
    """The checks below are only as good as the scanner: relative imports at any depth,
    imports inside functions, ``from package import module``."""
    assert ("mindyolox.errors", 18) in _imports("mindyolox.commands._args")
    g = _graph()
    assert "mindyolox.ops.cpu_kernels" in g["mindyolox.options"]          # inside a function
    assert "mindyolox.ops.cpu_kernels" in g["mindyolox.models.conv"]      # from ..ops import cpu_kernels
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    cycles = _cycles(_graph())
    assert not cycles, "import circles among mindyolox modules: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_import_from_a_lower_room_up_to_a_higher_one():
    up = []
    for name in MODULES:
        level = _level(_room(name))
        for target, line in _imports(name):
            if _level(_room(target)) > level:
                up.append(f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}")
    assert not up, "imports that run up the rooms (order in ROOMS):\n" + "\n".join(sorted(set(up)))


def test_no_module_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_argparse_only_in_the_front_door():
    commands = PACKAGE / "commands"
    users = []
    for name, path in MODULES.items():
        if commands in path.parents:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            if "argparse" in names:
                users.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not users, "argparse outside mindyolox/commands/: " + ", ".join(users)


def _uses_harness(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name in ("bench.harness",) for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module == "bench.harness":
                return True
            if node.level == 0 and node.module == "bench" and any(a.name == "harness" for a in node.names):
                return True
            if node.level == 1 and (node.module == "harness" or (node.module is None and any(
                    a.name == "harness" for a in node.names))):
                return True
    return False


def test_every_bench_script_uses_the_harness():
    # not scripts: the harness itself, the package marker, a table of convolution shapes
    # (conv_candidates.py) and the official fine-tuning Exp that runs inside the anchor venv
    skip = ("harness.py", "__init__.py", "conv_candidates.py", "official_finetune_exp.py")
    scripts = [p for p in sorted((ROOT / "bench").glob("*.py")) if p.name not in skip]
    assert scripts, "no bench scripts found"
    without = [p.name for p in scripts if not _uses_harness(p)]
    assert not without, "bench scripts that do not import bench.harness: " + ", ".join(without)


@pytest.mark.parametrize("level", range(len(ROOMS)))
def test_every_room_exists(level):
    """The order names real rooms (a renamed room must be renamed here too)."""
    for room in ROOMS[level]:
        assert room == "__init__" or (PACKAGE / room).is_dir() or (PACKAGE / f"{room}.py").is_file(), room


def test_darknet_backbones_share_one_forward():
    """``CSPDarknet`` and ``Darknet`` had two identical ``construct`` methods; one base now."""
    tree = ast.parse((PACKAGE / "models" / "darknet.py").read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    owners = [name for name, c in classes.items()
              if any(isinstance(f, ast.FunctionDef) and f.name == "construct" for f in c.body)]
    assert len(owners) == 1, f"construct defined in {owners}"
    for name in ("CSPDarknet", "Darknet"):
        assert [b.id for b in classes[name].bases] == owners, name


def test_every_package_folder_is_in_the_wheel():
    """Each folder of ``mindyolox/`` with an ``__init__.py`` is listed in ``pyproject.toml``'s
    ``packages``: a sub-package left out installs a wheel whose commands die on import (the
    installed-wheel tests find it too, minutes later)."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert folders - listed == set()
