"""Import boundaries: model imports neither training nor service (nor web/settings libraries),
and service never imports training."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "model": {
        "training",
        "service",
        "fastapi",
        "starlette",
        "pydantic_settings",
        "prometheus_client",
    },
    "service": {"training"},
    "training": {"service"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_in_their_lane(package):
    files = sorted((ROOT / package).rglob("*.py"))
    bad = {str(f.relative_to(ROOT)): sorted(_imports(f) & FORBIDDEN[package]) for f in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_model_never_reads_the_environment_or_prints():
    for path in (ROOT / "model").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "os.environ" not in text and "getenv" not in text, path
        assert "print(" not in text, path
