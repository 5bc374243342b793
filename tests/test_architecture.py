"""The structure the code promises: the key reference is generated, the config is read through typed sections,
no name is special-cased outside its own module, no import circle (checked on its own import graph), short functions, a short round loop."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mpifl.config import PLUGINS, SCHEMA, SECTIONS
from mpifl.config.reference import MEANINGS, markdown
from mpifl.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mpifl"


def sources(*skip: str):
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if not any(relative.startswith(s) for s in skip):
            yield relative, path.read_text()


def test_the_key_reference_is_the_one_the_schema_generates():
    page = (ROOT / "docs" / "reference" / "config.md").read_text()
    assert page == markdown(), "docs/reference/config.md is stale: python -m mpifl.config.reference > it"
    declared = set(SCHEMA) | {f"server.{k}" for cls in STRATEGIES.values() for k in cls.parameters}
    assert set(MEANINGS) == declared  # no key without a meaning, no meaning of a key that is gone
    for key, (registry, _) in PLUGINS.items():
        assert all(f"`{name}`" in page for name in registry), key


def test_no_dotted_config_key_is_read_outside_the_config_package():
    keys = [*SCHEMA, *(f"server.{k}" for cls in STRATEGIES.values() for k in cls.parameters)]
    dotted = re.compile(r"\[(['\"])(?:" + "|".join(re.escape(k) for k in keys) + r")\1\]"
                        r"|\[f(['\"])(?:" + "|".join(SECTIONS) + r")\.\{")
    offenders = [f"{name}: {m.group(0)}" for name, text in sources("config/") for m in dotted.finditer(text)]
    assert offenders == []


def test_no_registered_name_is_special_cased_outside_its_own_module():
    """Every name of every registry: a comparison with it as a string stands only in the module of its class.
    Left out: "none", the off value every plug-in key shares, and the output links (linear, logistic, softmax),
    a vocabulary of their own (mpifl.links) that the linear kinds take as names."""
    import inspect

    from mpifl.links import KIND_CODES

    offenders = []
    for key, (registry, _) in PLUGINS.items():
        for name, cls in registry.items():
            if name == "none" or name in KIND_CODES:
                continue
            own = Path(inspect.getfile(cls)).resolve()
            compared = re.compile(rf"[=!]= *['\"]{re.escape(name)}['\"]|['\"]{re.escape(name)}['\"] *[=!]=")
            offenders += [f"{key} {name!r}: {rel}" for rel, text in sources()
                          if (PACKAGE / rel).resolve() != own and compared.search(text)]
    assert offenders == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """mpifl's modules and the mpifl modules each imports, counting every import: at the top, inside functions and
    under TYPE_CHECKING, since each is a dependency a reader follows ("from pkg import mod" counts as pkg.mod)."""
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names]
            for target in targets:
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected sets of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_only_the_mode_objects_and_the_config_ask_which_mode_a_job_is_in():
    """mpifl.modes holds what differs between federated and distributed mode; elsewhere a module asks the mode
    object (MODES[cfg.mode]) or a stage's declared modes, never compares the mode's name."""
    from mpifl.modes import MODES

    asked = re.compile(r"\b(?:cfg|typed|base|self\.cfg|loop\.cfg)\.mode *[=!]=|\bmode *[=!]= *['\"](?:federated|distributed)")
    offenders = [rel for rel, text in sources("config/", "modes.py") if asked.search(text)]
    assert offenders == []
    assert set(MODES) == set(SCHEMA["mode"][1].options)


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mpifl"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("mpifl"))
    return out


def test_model_imports_nothing_from_the_kernels_and_roles_is_imported_by_no_loop():
    assert not any(name.startswith("mpifl.kernels") for name in _imports(PACKAGE / "model.py"))
    for loop in ("loop.py", "federated.py", "federated_clients.py", "checkpointing.py"):
        assert not any(name.startswith("mpifl.roles") for name in _imports(PACKAGE / loop)), loop


def test_functions_are_short_and_the_round_loop_module_is_small():
    long = []
    for rel, text in sources("kernels/"):
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{rel}:{node.lineno} {node.name}")
    assert long == []
    assert len((PACKAGE / "federated.py").read_text().splitlines()) < 250


def test_every_mpi_test_lives_in_a_test_mpi_file_and_every_test_mpi_file_holds_only_mpi_tests():
    """tests/run.sh collects only tests/test_mpi_*.py under mpiexec (every rank imports what it collects), and
    the serial part deselects the mpi marker: a test on the wrong side of this line would never run."""
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            marked = any("mark.mpi" in ast.unparse(d) for d in node.decorator_list)
            assert marked == path.name.startswith("test_mpi_"), (
                f"{path.name}::{node.name}: tests marked mpi go in tests/test_mpi_*.py, and only they")
