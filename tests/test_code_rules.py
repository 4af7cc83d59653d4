"""Code rules over the source packages (model/, service/, training/, scripts/, any bench*/):

(a) no source file over MAX_LINES lines;
(b) no module imports or uses another module's private name (`from pkg.mod import _name`,
    `mod._name` where `mod` is an imported module or name of this repo; dunder names are public);
(c) no module rebinds or mutates another module's globals (`mod.X = ...`, `mod.TABLE[k] = ...`,
    `TABLE[k] = ...` or `TABLE.update(...)` for a `TABLE` imported from this repo, `setattr(mod,
    ...)`): a caller that needs other behaviour passes it in;
(d) no comment or docstring points at documents outside the repo ("design §4", "issue 7",
    "research notes"); citations of the thesis the method comes from ("thesis §3.1") are fine.

The checks read the source with ast and tokenize; nothing is imported or run.
"""

import ast
import io
import re
import tokenize
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
SOURCE_DIRS = ("model", "service", "training", "scripts")
OUTSIDE_POINTER = re.compile(
    r"design §|research notes|docs/research|\bissue #?\d|\bthe issue\b", re.IGNORECASE
)
MUTATING_METHODS = frozenset(
    {"update", "setdefault", "pop", "popitem", "clear", "append", "extend", "insert", "remove"}
    | {"add", "discard", "sort", "reverse"}
)

# Violations that predate these rules, as (rule, file, name), each to be fixed where it is:
# a fix removes its entry, and `test_known_violations_still_exist` fails on an entry that no
# longer occurs, so the list only shrinks and nothing new is let in.
KNOWN_VIOLATIONS: frozenset[tuple[str, str, str]] = frozenset()


class Violation(NamedTuple):
    rule: str  # "long-file" | "private-name" | "foreign-global" | "outside-pointer"
    path: str  # relative to the repository root
    name: str  # what is used, rebound or written


def source_files() -> list[Path]:
    dirs = [ROOT / d for d in SOURCE_DIRS]
    dirs += sorted(p for p in ROOT.glob("bench*") if p.is_dir())  # a top-level bench package
    return sorted(f for d in dirs for f in d.rglob("*.py") if "__pycache__" not in f.parts)


def module_name(path: str) -> str:
    """'training/fit.py' → 'training.fit'; 'model/__init__.py' → 'model'."""
    parts = list(Path(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_repo_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def is_repo_name(dotted: str) -> bool:
    """A dotted name that starts in one of this repo's packages (module or not)."""
    return (ROOT / dotted.split(".")[0] / "__init__.py").is_file()


# ---- the checker: one file's source → its violations ---------------------------------------


class _FileChecker:
    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.module = module_name(path)
        self.source = source
        self.tree = ast.parse(source)
        self.bound: dict[str, str] = {}  # local name → the dotted repo name it was imported as
        self.found: set[Violation] = set()

    def violations(self) -> set[Violation]:
        if len(self.source.splitlines()) > MAX_LINES:
            self._add("long-file", f"over {MAX_LINES} lines")
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                self._check_import(node)
        self._bind_aliases()
        for node in ast.walk(self.tree):
            self._check_use(node)
        self._check_text()
        return self.found

    def _add(self, rule: str, name: str) -> None:
        self.found.add(Violation(rule, self.path, name))

    # (b) private names, and the bindings (c) needs

    def _absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.module.split(".")
        if not self.path.endswith("__init__.py"):
            package = package[:-1]
        package = package[: len(package) - node.level + 1]
        return ".".join([*package, *([node.module] if node.module else [])])

    def _check_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not is_repo_name(alias.name):
                    continue
                self._check_module_path(alias.name)
                if alias.asname:
                    self.bound[alias.asname] = alias.name
                else:
                    self.bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
            return
        source = self._absolute(node)
        if not is_repo_name(source):
            return
        self._check_module_path(source)
        for alias in node.names:
            dotted = f"{source}.{alias.name}"
            if is_private(alias.name) and source != self.module:
                self._add("private-name", dotted)
            self.bound[alias.asname or alias.name] = dotted

    def _bind_aliases(self) -> None:
        """`table = steps.STEPS` makes `table` stand for training.steps.STEPS, unless the name
        is also bound to anything else in the file."""
        aliases: dict[str, str | None] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.For | ast.With):
                for name, value in _name_bindings(node):
                    dotted = self._dotted(value) if value is not None else None
                    if dotted and is_repo_module(dotted):
                        dotted = None  # a module under another name: bound by its import
                    known = aliases.get(name, dotted)
                    aliases[name] = dotted if known == dotted else None
        self.bound |= {name: dotted for name, dotted in aliases.items() if dotted}

    def _check_module_path(self, dotted: str) -> None:
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            if is_private(part):
                self._add("private-name", ".".join(parts[: i + 1]))
                return

    def _dotted(self, node: ast.expr) -> str | None:
        """The repo name an expression stands for: `fit._session` → 'training.fit._session'."""
        if isinstance(node, ast.Name):
            return self.bound.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Subscript):
            base = self._dotted(node.value)
            return f"{base}[]" if base else None
        return None

    def _check_use(self, node: ast.AST) -> None:
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            dotted = self._dotted(node)
            if dotted and not dotted.startswith(f"{self.module}."):
                self._add("private-name", dotted)
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            self._check_target(target)
        if isinstance(node, ast.Call):
            self._check_call(node)

    # (c) another module's globals

    def _check_target(self, target: ast.expr) -> None:
        if isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self._check_target(element)
        elif isinstance(target, ast.Starred):
            self._check_target(target.value)
        elif isinstance(target, ast.Attribute | ast.Subscript):
            dotted = self._dotted(target)
            if dotted:
                self._add("foreign-global", dotted)

    def _check_call(self, call: ast.Call) -> None:
        func = call.func
        if isinstance(func, ast.Name) and func.id in ("setattr", "delattr") and call.args:
            dotted = self._dotted(call.args[0])
            if dotted:
                self._add("foreign-global", f"{func.id}({dotted})")
        elif isinstance(func, ast.Attribute) and func.attr in MUTATING_METHODS:
            dotted = self._dotted(func.value)
            if dotted and not is_repo_module(dotted):  # a module's own function is public API
                self._add("foreign-global", f"{dotted}.{func.attr}()")

    # (d) comments and docstrings

    def _check_text(self) -> None:
        lines: list[str] = []
        for token in tokenize.generate_tokens(io.StringIO(self.source).readline):
            if token.type == tokenize.COMMENT:
                lines.append(token.string)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                lines += (ast.get_docstring(node, clean=False) or "").splitlines()
        for line in lines:
            if match := OUTSIDE_POINTER.search(line):  # named by the match in its context
                start = line.rfind(" ", 0, max(0, match.start() - 20)) + 1
                end = line.find(" ", match.end() + 20)
                self._add("outside-pointer", line[start : end if end >= 0 else None].strip())


def _name_bindings(node: ast.AST) -> list[tuple[str, ast.expr | None]]:
    """(name, value) for every plain name a statement binds; value None where not one
    expression (tuple unpacking, loop variables, augmented assignment, `with ... as`)."""
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign):
        targets, value = [node.target], node.value
    elif isinstance(node, ast.AugAssign | ast.For):
        targets, value = [node.target], None
    else:
        targets = [item.optional_vars for item in node.items if item.optional_vars]
        value = None
    pairs: list[tuple[str, ast.expr | None]] = []
    for target in targets:
        if isinstance(target, ast.Name):
            pairs.append((target.id, value))
        else:
            pairs += [(name, None) for name in _unpacked_names(target)]
    return pairs


def _unpacked_names(target: ast.expr) -> list[str]:
    """Names bound by an unpacking target; `x[i] = ...` and `x.a = ...` bind none."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Starred):
        return _unpacked_names(target.value)
    if isinstance(target, ast.Tuple | ast.List):
        return [name for element in target.elts for name in _unpacked_names(element)]
    return []


def check(path: str, source: str) -> set[Violation]:
    return _FileChecker(path, source).violations()


@pytest.fixture(scope="module")
def found() -> set[Violation]:
    violations: set[Violation] = set()
    for file in source_files():
        violations |= check(str(file.relative_to(ROOT)), file.read_text(encoding="utf-8"))
    return violations


def _new(found: set[Violation], rule: str) -> list[Violation]:
    return sorted(v for v in found if v.rule == rule and tuple(v) not in KNOWN_VIOLATIONS)


# ---- the rules over the repository ------------------------------------------------------------


def test_no_source_file_over_the_line_limit(found):
    assert _new(found, "long-file") == []


def test_no_module_uses_another_modules_private_names(found):
    assert _new(found, "private-name") == []


def test_no_module_rebinds_another_modules_globals(found):
    assert _new(found, "foreign-global") == []


def test_no_comment_points_outside_the_repo(found):
    assert _new(found, "outside-pointer") == []


def test_known_violations_still_exist(found):
    """A fixed violation leaves the allow-list, so it cannot come back unnoticed."""
    assert sorted(KNOWN_VIOLATIONS - {tuple(v) for v in found}) == []


def test_the_scan_covers_every_source_package():
    scanned = {f.relative_to(ROOT).parts[0] for f in source_files()}
    assert set(SOURCE_DIRS) <= scanned


# ---- the checker itself, on small sources ------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from model.network import _confidence\n",
            {("private-name", "model.network._confidence")},
        ),
        ("from . import _helpers\n", {("private-name", "training._helpers")}),
        (
            "from training import fit\nfit._session()\n",
            {("private-name", "training.fit._session")},
        ),
        (
            "import training.fit\ntraining.fit._train_epoch()\n",
            {("private-name", "training.fit._train_epoch")},
        ),
        (
            "import model.solvers as s\nx = s._EPS\n",
            {("private-name", "model.solvers._EPS")},
        ),
        (
            "from training import steps\nsteps.STEPS['x'] = 1\n",
            {("foreign-global", "training.steps.STEPS[]")},
        ),
        (
            "from training.steps import STEPS\nSTEPS.update(x=1)\n",
            {("foreign-global", "training.steps.STEPS.update()")},
        ),
        (
            "from training import steps\ntable = steps.STEPS\ntable.clear()\n",
            {("foreign-global", "training.steps.STEPS.clear()")},
        ),
        (
            "import model.config\nmodel.config.STEMS = ()\n",
            {("foreign-global", "model.config.STEMS")},
        ),
        (
            "from model import solvers\nsetattr(solvers, 'X', 1)\n",
            {("foreign-global", "setattr(model.solvers)")},
        ),
        ("# as in design §7\n", {("outside-pointer", "# as in design §7")}),
        ('"""The targets of issue 12."""\n', {("outside-pointer", "The targets of issue 12.")}),
        ("# loop to a fixed point (thesis §3.1)\n", set()),
    ],
)
def test_checker_finds_what_it_should(source, expected):
    found = {(v.rule, v.name) for v in check("training/probe.py", source)}
    assert found == expected


@pytest.mark.parametrize(
    "source",
    [
        "def _own(): ...\n_own()\n",  # a module's own private
        "import torch\ntorch._C\n",  # a private of a library, not of this repo
        "from model.network import DynaLayNet\nDynaLayNet.__name__\n",  # dunder names are public
        "from model.solvers import get_solver\nSOLVERS = {}\nSOLVERS['x'] = get_solver('x')\n",
        "from model import solvers\nsolvers.SOLVERS.get('x')\n",  # reading is fine
        "from training import steps\nt = steps.STEPS\nt = {}\nt['x'] = 1\n",  # rebound first
        "import model.actions\nclass A:\n    x: int = 1\nA.x = 2\n",  # own names
    ],
)
def test_checker_lets_ordinary_code_pass(source):
    assert check("training/probe.py", source) == set()


def test_checker_counts_lines():
    assert check("service/long.py", "x = 1\n" * (MAX_LINES + 1)) == {
        Violation("long-file", "service/long.py", f"over {MAX_LINES} lines")
    }
    assert check("service/short.py", "x = 1\n" * MAX_LINES) == set()


# ---- (e) no import cycles inside a package -----------------------------------------------------

ACYCLIC_PACKAGES = ("service", "model")


def imported_modules(path: str, source: str, package: str) -> set[str]:
    """The modules of `package` that the file `path` (relative to the root) imports anywhere:
    at the top, under `if TYPE_CHECKING:` and inside functions alike (ast.walk sees every
    statement)."""
    checker = _FileChecker(path, source)
    found: set[str] = set()
    for node in ast.walk(checker.tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source_module = checker._absolute(node)
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` mod itself
            names = [
                f"{source_module}.{alias.name}"
                if is_repo_module(f"{source_module}.{alias.name}")
                else source_module
                for alias in node.names
            ]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] == package}
    return found - {checker.module}


def import_graph(package: str) -> dict[str, set[str]]:
    """module → the modules of the same package it imports."""
    files = sorted(f for f in (ROOT / package).rglob("*.py") if "__pycache__" not in f.parts)
    graph = {}
    for file in files:
        path = str(file.relative_to(ROOT))
        graph[module_name(path)] = imported_modules(path, file.read_text("utf-8"), package)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle [a, b, ..., a] of `graph`, or [] when it has none (depth-first search,
    the grey set being the modules on the current path)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        for target in sorted(graph.get(node, ())):
            cycle = visit(target, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return []

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return []


@pytest.mark.parametrize("package", ACYCLIC_PACKAGES)
def test_no_import_cycle_inside_a_package(package):
    graph = import_graph(package)
    assert len(graph) > 10  # the package was found and read
    assert find_cycle(graph) == []


def test_the_cycle_finder_sees_type_checking_and_local_imports():
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert find_cycle(graph) == ["p.a", "p.b", "p.c", "p.a"]
    assert find_cycle({"p.a": {"p.b"}, "p.b": set(), "p.c": {"p.a", "p.b"}}) == []
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from service.engines.stepping import EngineSpec\n"
        "def f():\n    from service.repository import state\n"
        "from . import precision\n"
        "import torch\n"
    )
    found = imported_modules("service/engines/probe.py", source, "service")
    assert found == {
        "service.engines.stepping",
        "service.repository.state",
        "service.engines.precision",
    }


# ---- (f) service/ is a few rooms, each entered by its face ---------------------------------------

MAX_SERVICE_ENTRIES = 12
FACE_SCAN_DIRS = (*SOURCE_DIRS, "tests", "benchmarks")
# No exceptions: the faces of engines/ and ray/ name their heavy pieces too (the ONNX engine,
# the Ray app) and import them on first use, so the benchmarks, scripts and tests that
# exercise those pieces enter by the face like everyone else.


def service_subpackages() -> set[str]:
    return {p.name for p in (ROOT / "service").iterdir() if (p / "__init__.py").is_file()}


def face_bypasses(path: str, source: str, subpackages: set[str]) -> set[tuple[str, str]]:
    """(path, module) for each module of a service subpackage that `path` imports from outside
    that subpackage, other than its face (`service.X`) or its entry point (`service.X.__main__`,
    which only `python -m` runs)."""
    checker = _FileChecker(path, source)
    inside = checker.module.split(".")[:2] if checker.module.startswith("service.") else []
    found: set[tuple[str, str]] = set()
    for node in ast.walk(checker.tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source_module = checker._absolute(node)
            modules = [source_module]
            if source_module.count(".") == 1:  # `from service.X import y`: y may be a module
                modules += [
                    f"{source_module}.{alias.name}"
                    for alias in node.names
                    if is_repo_module(f"{source_module}.{alias.name}")
                ]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if len(parts) < 3 or parts[0] != "service" or parts[1] not in subpackages:
                continue
            if parts[:2] == inside or parts[2] == "__main__":
                continue
            found.add((path, module))
    return found


def test_service_has_at_most_twelve_top_level_entries():
    entries = [p.name for p in (ROOT / "service").iterdir() if p.name != "__pycache__"]
    assert len(entries) <= MAX_SERVICE_ENTRIES, sorted(entries)


def test_every_service_subpackage_has_a_face():
    for name in sorted(service_subpackages()):
        face = ast.parse((ROOT / "service" / name / "__init__.py").read_text("utf-8"))
        assert ast.get_docstring(face), f"service/{name}/__init__.py has no docstring"


def test_a_service_subpackage_is_entered_by_its_face_only():
    subpackages = service_subpackages()
    files = sorted(
        f for d in FACE_SCAN_DIRS for f in (ROOT / d).rglob("*.py") if "__pycache__" not in f.parts
    )
    found: set[tuple[str, str]] = set()
    for file in files:
        path = str(file.relative_to(ROOT))
        found |= face_bypasses(path, file.read_text("utf-8"), subpackages)
    assert sorted(found) == []


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("service/app/factory.py", "from service.oip.grpc_server import GrpcServer\n", True),
        ("tests/test_x.py", "import service.scheduling.batcher\n", True),
        ("tests/test_x.py", "from service.predict import auth\n", True),
        ("service/app/factory.py", "from service.oip import GrpcServer\n", False),
        ("service/oip/http_json.py", "from service.oip.inference import infer\n", False),
        ("service/oip/http_json.py", "from .inference import infer\n", False),
        ("tests/test_x.py", "from service.ray.__main__ import BackgroundStart\n", False),
    ],
)
def test_the_face_check_sees_what_it_should(path, source, expected):
    subpackages = {"app", "oip", "predict", "ray", "scheduling"}
    assert bool(face_bypasses(path, source, subpackages)) == expected
