"""House rules that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_DOMAIN = ("asyncio", "sqlalchemy", "aio_pika", "fastapi", "httpx", "starlette")


def domain_files(service: str) -> list[Path]:
    return sorted((ROOT / "services" / service / "domain").glob("*.py"))


@pytest.mark.parametrize("service", [s for s in DEFAULT_PORTS if s != "softswitch"])
def test_domain_cores_are_sans_io(service: str) -> None:
    files = domain_files(service)
    assert files, f"{service} has no domain package"
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_IN_DOMAIN, f"{path}: imports {name}"
    # Nor indirectly, through shared modules they import.
    probe = (f"import sys, importlib; importlib.import_module('services.{service}.domain');"
             f"print(sorted(m for m in {FORBIDDEN_IN_DOMAIN!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, check=True).stdout.strip()
    assert loaded == "[]", f"services.{service}.domain pulls in {loaded}"


def test_no_module_level_settings_or_engines() -> None:
    for path in list((ROOT / "services").rglob("*.py")) + list((ROOT / "shared").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
                called = ast.unparse(node.value.func)
                assert not called.endswith(("Settings", "create_async_engine", "make_engine",
                                            "create_app")), f"{path}: module-level {called}()"


EVENT_TYPE = re.compile(r"^[a-z][a-z_]*\.[a-z][a-z_]*\.[a-z][a-z_]*$")


def source_files() -> list[Path]:
    return [path for path in sorted((ROOT / "services").rglob("*.py"))
            + sorted((ROOT / "shared").rglob("*.py")) if "migrations" not in path.parts]


def test_events_are_emitted_as_catalog_models() -> None:
    """``tx.emit(Model(...), subject=...)``: the type and version come from the model, so a
    dict or a type string passed to emit is a mistake waiting to happen."""
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "emit" and node.args):
                first = node.args[0]
                assert not isinstance(first, ast.Dict | ast.Constant | ast.JoinedStr), (
                    f"{path}:{node.lineno}: emit({ast.unparse(first)[:40]}...) - pass a model")


def test_consumed_types_are_not_kept_by_hand() -> None:
    """What a queue consumes comes from its handlers' models (``shared.consumers``), not from
    a list of type names that can drift from them."""
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                names = [e.value for e in node.elts if isinstance(e, ast.Constant)
                         and isinstance(e.value, str) and EVENT_TYPE.match(e.value)]
                assert len(names) < 2, f"{path}:{node.lineno}: a hand-kept list of types {names}"


def project_modules() -> dict[str, Path]:
    modules = {}
    for base in ("services", "shared", "hotline"):
        for path in (ROOT / base).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def imported_modules(module: str, path: Path, node: ast.Import | ast.ImportFrom,
                     modules: dict[str, Path]) -> set[str]:
    """The project modules an import statement loads (a name imported from a package
    counts as the package unless it is a module of its own)."""
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
            for _ in range(node.level - 1):
                package = package.rsplit(".", 1)[0]
            base = f"{package}.{base}" if base else package
        candidates = [f"{base}.{alias.name}" for alias in node.names]
        candidates = [name if name in modules else base for name in candidates]
    found = set()
    for name in candidates:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def test_no_import_cycles_and_no_deferred_imports() -> None:
    """Every import of a project module at the top of its module (none hidden in functions
    or behind TYPE_CHECKING; the CLI defers the simulator so other commands start fast), and
    no cycles among them."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        graph[module] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            loaded = imported_modules(module, path, node, modules)
            if id(node) not in top:
                assert not loaded or module == "hotline.cli", (
                    f"{path}:{node.lineno}: deferred import of {sorted(loaded)}")
                continue
            graph[module] |= loaded
    # A module on a cycle reaches itself.
    for start in graph:
        seen, stack = set(), list(graph[start])
        while stack:
            module = stack.pop()
            assert module != start, f"import cycle through {start}"
            if module not in seen:
                seen.add(module)
                stack.extend(graph[module])


def test_sqlalchemy_stays_in_repositories_db_modules_and_migrations() -> None:
    """SQL is built where rows are: ``repository.py`` (or a ``repository/`` package), ``db.py``
    (tables) and migrations. A handler gathers facts through the repository and never writes
    a query itself."""
    found = set()
    for path in sorted((ROOT / "services").rglob("*.py")):
        if {"migrations", "repository"} & set(path.parts) or path.name in ("db.py",
                                                                           "repository.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "sqlalchemy" for name in names):
                found.add(str(path.relative_to(ROOT)))
    assert not found, f"SQLAlchemy outside a repository: {sorted(found)}"


def handler_modules() -> list[Path]:
    services = ROOT / "services"
    return sorted([*services.glob("*/handlers.py"), *services.glob("*/handlers/*.py"),
                   *services.glob("*/*_commands.py")])


def test_handlers_ask_the_domain_instead_of_comparing_states() -> None:
    """``if entry.state is EntryState.WAITING`` in a handler is a rule outside the domain;
    the domain names it (``entry.waiting``, ``od.linkable(state)``)."""
    assert handler_modules()
    for path in handler_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            for side in [node.left, *node.comparators]:
                state_attribute = isinstance(side, ast.Attribute) and side.attr == "state"
                state_enum = (isinstance(side, ast.Attribute) and isinstance(side.value, ast.Name)
                              and side.value.id.endswith("State"))
                assert not (state_attribute or state_enum), (
                    f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")


SQL_STATEMENT = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM)\b")


def test_handlers_write_no_sql() -> None:
    """Handlers sequence; the statements they run are the repository's, named for the fact
    they gather or the row they write. An f-string is read whole (``{…}`` standing for its
    fields), so ``f"UPDATE {S}.orders SET ..."`` is seen as the statement it is."""
    assert handler_modules()
    found = []
    for path in handler_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                text = "".join(part.value if isinstance(part, ast.Constant) else "{…}"
                               for part in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            match = SQL_STATEMENT.search(text)
            if match:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {match.group(0)}")
    assert not found, "SQL in handler modules (move it to the repository):\n" + "\n".join(
        sorted(set(found)))
