"""The package's structure, checked (issue 21): the layers written down in .importlinter hold
(lint-imports), a core module that imports ROS breaks them, the project's modules import each
other without cycles, and no module outgrows one idea (MAX_MODULE_LINES)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / ".importlinter"
# A module longer than this holds more than one idea (issue 21); the exceptions below say why
# each is one idea anyway.
MAX_MODULE_LINES = 600
LONGER_BY_DESIGN: dict[str, str] = {}


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` with the repository's contracts on the dir_ros package under root
    (root first on sys.path, so that the source tree and not an installed copy is read)."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) \
        or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is not installed (requirements/core.txt: import-linter)")
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([exe, "--no-cache", "--no-logo", str(CONTRACTS)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_contracts_are_kept() -> None:
    """Every contract of .importlinter is kept by the source tree."""
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    for name in ("Layers import only downward", "The core imports no ROS",
                 "The node imports no training or evaluation code"):
        assert f"{name} KEPT" in run.stdout, run.stdout


def lint_copy_with_import(tmp_path: Path, module: str, statement: str
                          ) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the package (under tmp_path) whose module (a path below
    dir_ros/) ends with the import statement."""
    shutil.copytree(ROOT / "dir_ros", tmp_path / "dir_ros",
                    ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / "dir_ros" / module
    path.write_text(path.read_text() + f"\n{statement}  # noqa: E402,F401\n")
    return lint_imports(tmp_path)


def test_a_core_module_importing_rclpy_breaks_the_contracts(tmp_path: Path) -> None:
    """A copy of the package whose geometry module imports rclpy fails lint-imports, naming
    the no-ROS contract and the offending import."""
    run = lint_copy_with_import(tmp_path, "common/geometry.py", "import rclpy")
    assert run.returncode != 0, run.stdout
    assert "The core imports no ROS BROKEN" in run.stdout, run.stdout
    assert "dir_ros.common.geometry -> rclpy" in run.stdout, run.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    """A copy of the package whose hand front end imports the node's layer fails the layers
    contract."""
    run = lint_copy_with_import(tmp_path, "frontend/crop.py", "from dir_ros.post import smoothing")
    assert run.returncode != 0, run.stdout
    assert "Layers import only downward BROKEN" in run.stdout, run.stdout
    assert "dir_ros.frontend.crop -> dir_ros.post.smoothing" in run.stdout, run.stdout


def _import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (grimp: module-level and in-function imports)
    of the source tree's dir_ros."""
    grimp = pytest.importorskip("grimp")
    sys.path.insert(0, str(ROOT))
    try:
        graph = grimp.build_graph("dir_ros", cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    """The cycle finder itself: a -> b -> c -> a is one cycle, d -> a none."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    """No two project modules import each other, directly or through others."""
    edges = _import_graph()
    assert "dir_ros.ros.node" in edges and "dir_ros.common.geometry" in edges  # the real graph
    assert _cycles(edges) == []


def test_no_module_outgrows_one_idea() -> None:
    """Every module of dir_ros has at most MAX_MODULE_LINES lines, or a reason in
    LONGER_BY_DESIGN."""
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / "dir_ros").rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert set(long) <= set(LONGER_BY_DESIGN), long
