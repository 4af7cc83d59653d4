"""Helpers for the deploy checks: repo paths, external tools, and the PromQL the stack uses.

External tools (docker-compose, promtool, prometheus) come from Debian's `docker-compose` and
`prometheus` packages. Without them the tests that need them skip with the reason; with
DYNALAY_REQUIRE_DEPLOY_TOOLS=1 (set in CI) a missing tool fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "dynalay.json"
FIXTURES = REPO / "tests" / "fixtures"

TOOL_PACKAGES = {
    "docker-compose": "docker-compose",
    "promtool": "prometheus",
    "prometheus": "prometheus",
}

# Stand-ins for Grafana's template variables when a panel query is run by Prometheus itself.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$model": ".*",
}

CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2470, 0.2435, 0.2616]
CIFAR_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
TINY_MODEL = "tiny-cifar"
READY_TIMEOUT_S = 120  # load + warm-up of the tiny model on a busy shared CPU


def tool(name: str) -> str:
    """Path of an external binary, or skip (fail when DYNALAY_REQUIRE_DEPLOY_TOOLS=1)."""
    path = shutil.which(name)
    if path is None:
        reason = f"`{name}` not installed (apt-get install {TOOL_PACKAGES.get(name, name)})"
        if os.environ.get("DYNALAY_REQUIRE_DEPLOY_TOOLS") == "1":
            pytest.fail(reason + " but DYNALAY_REQUIRE_DEPLOY_TOOLS=1")
        pytest.skip(reason)
    return path


def run(cmd: list[str], *, timeout: float = 60, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


# --------------------------------------------------------------------------------------------
# The PromQL of the stack: every Grafana panel query (and template variable) and every alert.


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) for every query of the provisioned dashboard, variables included."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if query:
            out.append((f"variable ${var['name']}", query))
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    return out


def alert_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(RULES.read_text())
    return [
        (f"rule {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def as_promql(expr: str) -> str:
    """A panel query with Grafana's variables replaced, so Prometheus can run it."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_METRIC = re.compile(r"(?<![\w:$])(dynalay_[A-Za-z0-9_:]*|up)(?![\w:])")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: the service's (`dynalay_*`) and `up`.

    String literals (label values, regexes) are dropped first, so only selectors count.
    """
    return set(_METRIC.findall(_STRING.sub('""', expr)))


def exposed_names(exposition: str) -> set[str]:
    """Series names a PromQL query can use against this exposition.

    Built from the `# TYPE` lines, so a labelled metric counts even before its first
    observation: a counter is queried by its `_total` name, a histogram through its
    `_bucket`, `_sum` and `_count` series, a gauge by its own name.
    """
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            elif kind == "summary":
                names |= {name, f"{name}_sum", f"{name}_count"}
            elif kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def import_service_app():
    """`service.app.create_app` and `service.core.Settings`, or skip while they do not exist.

    Any other import error is a real failure and is raised.
    """
    try:
        from service.app import create_app
        from service.core import Settings
    except ModuleNotFoundError as exc:
        if exc.name in {"service.app.factory", "service.core.settings"}:
            pytest.skip(f"the service is not written yet ({exc.name} missing)")
        raise
    return create_app, Settings


def fixture_images() -> list[Path]:
    images = sorted(FIXTURES.glob("cifar10_*.png"))
    assert images, f"no fixture images in {FIXTURES}"
    return images
