"""The house style in the code: every public function and method says what it takes and
returns. A hint is the cheapest documentation that cannot drift, and `edgeprune` is used as a
library (`prune_model`, `export`, `bench`), so its surface is typed for the reader and the IDE.

Public: the name has no leading underscore (dunders count: a module's `__getattr__` is API), and
neither has an enclosing class; functions nested in a function body are local. Exempt: `self` /
`cls`, `*args` / `**kwargs`, and `__init__`'s return (always None).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# every folder that installs as (part of) the package, found through pyproject.toml so that a
# new room (pipeline/ today) is checked without touching this list
REQUIRED_ROOMS = {"edgeprune", "prune", "train", "export", "runtime_bench", "devices"}


def package_folders(root: Path = ROOT) -> list[Path]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    tops = {"edgeprune"} | {d.split("/")[0] for d in cfg.get("package-dir", {}).values()}
    if (root / "pipeline").is_dir():
        tops.add("pipeline")
    return sorted(root / t for t in tops if (root / t).is_dir())


def _is_public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def missing_annotations(source: str, where: str = "<src>") -> list[str]:
    """`where:line name: what is missing` for each public function in `source` lacking a hint."""
    found: list[str] = []

    def check(fn: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> None:
        args = fn.args
        params = args.posonlyargs + args.args + args.kwonlyargs
        if in_class and params and params[0].arg in ("self", "cls"):
            params = params[1:]
        missing = [p.arg for p in params if p.annotation is None]
        if fn.returns is None and fn.name != "__init__":
            missing.append("return")
        if missing:
            found.append(f"{where}:{fn.lineno} {fn.name}: {', '.join(missing)}")

    def visit(node: ast.AST, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                if _is_public(child.name):
                    visit(child, True)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if _is_public(child.name):
                    check(child, in_class)
            elif isinstance(child, ast.stmt):  # if / try / with at module or class level
                visit(child, in_class)

    visit(ast.parse(source, where), False)
    return found


def test_the_package_folders_are_found_from_the_repo_root():
    names = {p.name for p in package_folders()}
    assert REQUIRED_ROOMS <= names
    assert ("pipeline" in names) == (ROOT / "pipeline").is_dir()


def test_public_functions_have_type_hints():
    missing: list[str] = []
    for folder in package_folders():
        for path in sorted(folder.rglob("*.py")):
            if {".venv", "__pycache__"} & set(path.parts):
                continue
            missing += missing_annotations(path.read_text(), str(path.relative_to(ROOT)))
    assert missing == [], "public functions without type hints:\n" + "\n".join(missing)


def test_the_check_can_fail():
    src = '''
def ok(a: int, *args, **kwargs) -> int: ...
def no_return(a: int): ...
def no_param(a, b: int) -> None: ...
def _private(a): ...
def __getattr__(name): ...
class Public:
    def __init__(self, x: int): ...
    def method(self, y): ...
    @classmethod
    def make(cls) -> "Public": ...
    def _helper(self, z): ...
class _Private:
    def method(self, y): ...
if True:
    def guarded(a: int): ...
def outer() -> None:
    def inner(a): ...
'''
    assert missing_annotations(src) == [
        "<src>:3 no_return: return",
        "<src>:4 no_param: a",
        "<src>:6 __getattr__: name, return",
        "<src>:9 method: y, return",
        "<src>:16 guarded: return",
    ]
