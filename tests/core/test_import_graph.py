"""The import graph of the installed package: no cycles, and each room imports only the
rooms below it.

    pipeline/                      ship, compare, eval, recipes, the prune verb, generate / chat / info
       ↓
    runtime_bench/                 bench harness (local, ssh, adb), paired rounds, calibration runs
       ↓
    export/                        GGUF / ONNX writers, quantization, fidelity checks
       ↓
    train/                         recovery, distillation, pruning-aware training
       ↓
    prune/                         pruning requests, scores, surgery, methods, the latency target
       ↓
    devices/                       device profiles (data), their cost: latency model and roofline
       ↓
    edgeprune/ (core), itself four sub-rooms, bottom to top:
      data/                        token streams and their cache, embedded corpus, text sources,
                                   chat templates
      files/                       GGUF format / header / reader / input, ONNX check, checkpoint,
                                   spec_of
      shape/                       spec, units, quant presets and GGUF type mix, model, remote code
      base/                        errors, paths, hashing, tables, atomic writes, output folders,
                                   disk full, torch device, flag helpers: no ML

The order follows the data: a model is pruned, trained, exported, then benched; what a device
costs is known below all of them, so pruning can aim at a speed without importing the bench.
`edgeprune.cli` (the console entry) sits above all of them; it names the verbs' modules as strings
and imports the one asked for. Every import counts, also those inside functions (kept lazy for a
fast `--help`): a lazy import is still a dependency, and a lazy cycle still means two modules that
cannot be understood apart.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

import pytest

# bottom to top; a module may import its own room and the rooms before it in this list
CORE_ROOMS = ("base", "shape", "files", "data")
LAYERS = CORE_ROOMS + ("devices", "prune", "train", "export", "runtime_bench", "pipeline")
STAGE_ROOMS = LAYERS[len(CORE_ROOMS):]
# the console entry and the package's face (it re-exports the spec and the base error) sit above
# every room
ENTRY = {"edgeprune", "edgeprune.cli", "edgeprune.__main__"}


def room_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return "entry"


def installed_modules() -> dict[str, Path]:
    """module name -> source file, for every module of the installed package (its rooms found
    through the import system, so the editable mapping and a wheel both work)."""
    out: dict[str, Path] = {}

    def walk(package: str) -> None:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.origin, f"{package} is not installed"
        out[package] = Path(spec.origin)
        for info in pkgutil.iter_modules(spec.submodule_search_locations):
            name = f"{package}.{info.name}"
            if info.ispkg:
                if package == "edgeprune" and info.name not in STAGE_ROOMS:
                    walk(name)  # a sub-room of the core
                elif package != "edgeprune":
                    walk(name)
            else:
                out[name] = Path(importlib.util.find_spec(name).origin)

    walk("edgeprune")
    for room in STAGE_ROOMS:
        walk(f"edgeprune.{room}")
    return out


def import_edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in its body). `from P import x` is an
    edge to P.x when that is a module, else to P."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
            edges[name].update(t for t in targets if t in modules and t != name)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
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
                        found.append(sorted(comp))
    return found


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in sorted(edges.items()):
        if src in ENTRY:
            continue
        for dst in sorted(targets):
            order = LAYERS + ("entry",)
            if order.index(room_of(dst)) > order.index(room_of(src)):
                bad.append(f"{src} ({room_of(src)}) imports {dst} ({room_of(dst)})")
    return bad


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_edges(installed_modules())


def test_every_room_is_installed_and_walked(graph):
    rooms = {room_of(m) for m in graph}
    assert rooms == set(LAYERS) | {"entry"}
    assert {m for m in graph if room_of(m) == "entry"} <= ENTRY, "a module of the core outside its sub-rooms"
    assert {"edgeprune.pipeline.ship", "edgeprune.files.checkpoint", "edgeprune.prune.methods.adapt",
            "edgeprune.runtime_bench.calibrate"} <= set(graph)


def test_pyproject_installs_exactly_the_rooms():
    """A new top-level folder must be given a place in LAYERS before it can be installed."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    cfg = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["tool"]["setuptools"]
    top = {p.split(".")[1] for p in cfg["packages"] if p.count(".") == 1}
    assert top == set(LAYERS)


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_core_imports_no_stage_and_rooms_import_only_below(graph):
    assert layer_violations(graph) == []


def test_the_checks_can_fail():
    """The two detectors on a small graph that breaks both rules."""
    g = {"edgeprune.data.tokens": {"edgeprune.data.embedded"}, "edgeprune.data.embedded": {"edgeprune.data.tokens"},
         "edgeprune.files.checkpoint": {"edgeprune.export.api", "edgeprune.data.tokens"},
         "edgeprune.export.api": set(), "edgeprune.shape.spec": {"edgeprune.base.errors"},
         "edgeprune.prune.plan": {"edgeprune.train.loop"}, "edgeprune.train.loop": {"edgeprune.prune.plan"}}
    assert cycles(g) == [["edgeprune.data.embedded", "edgeprune.data.tokens"], ["edgeprune.prune.plan", "edgeprune.train.loop"]]
    assert layer_violations(g) == ["edgeprune.files.checkpoint (files) imports edgeprune.data.tokens (data)",
                                   "edgeprune.files.checkpoint (files) imports edgeprune.export.api (export)",
                                   "edgeprune.prune.plan (prune) imports edgeprune.train.loop (train)"]


def test_lazy_and_relative_imports_are_edges(tmp_path):
    pkg = tmp_path / "p.py"
    pkg.write_text("def f():\n    from edgeprune.export import api\n    from ..shape.spec import ArchSpec\n")
    edges = import_edges({"edgeprune.files.checkpoint": pkg, "edgeprune.export.api": pkg, "edgeprune.shape.spec": pkg})
    assert edges["edgeprune.files.checkpoint"] == {"edgeprune.export.api", "edgeprune.shape.spec"}


def private_reaches(edges: dict[str, set[str]], src_room: str, dst_room: str) -> list[str]:
    """Imports from `src_room` into `dst_room` past its public face (the package itself)."""
    face = f"edgeprune.{dst_room}"
    return [f"{src} imports {dst}" for src, targets in sorted(edges.items()) if room_of(src) == src_room
            for dst in sorted(targets) if room_of(dst) == dst_room and dst != face]


def test_train_uses_prune_through_its_public_face_only(graph):
    """Pruning-aware training's surgery, the optimizer-state replay and block-wise healing's layer
    walk reach prune through `edgeprune.prune` (its documented names), never a private module: the
    one seam between the two rooms (prune/training_seam.py)."""
    assert private_reaches(graph, "train", "prune") == []
    g = {"edgeprune.train.optim": {"edgeprune.prune.surgery", "edgeprune.prune"}}
    assert private_reaches(g, "train", "prune") == ["edgeprune.train.optim imports edgeprune.prune.surgery"]
