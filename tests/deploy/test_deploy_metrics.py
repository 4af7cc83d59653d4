"""Every metric the dashboard and the alerts query exists in the real service's /metrics, and
the exposition passes `promtool check metrics`."""

from __future__ import annotations

from tests.deploy.deploy_helpers import (
    alert_expressions,
    dashboard_queries,
    exposed_names,
    metric_names,
    run,
)
from tests.deploy.deploy_helpers import tool as require_tool

PROMETHEUS_MADE = {"up"}  # series Prometheus itself adds to every scrape target


def test_every_dashboard_and_alert_metric_is_exposed(exposition):
    exposed = exposed_names(exposition)
    missing = {
        f"{where}: {name}"
        for where, expr in dashboard_queries() + alert_expressions()
        for name in metric_names(expr) - PROMETHEUS_MADE
        if name not in exposed
    }
    assert not missing, "queried but not exposed by the service:\n" + "\n".join(sorted(missing))


def test_exposition_has_the_series_the_dashboard_shows(exposition):
    """After answered predictions the labelled series exist, with the labels queries group by."""
    assert 'dynalay_requests_total{model="tiny-cifar",status="200"} 3.0' in exposition
    assert 'status="400"' in exposition
    assert 'dynalay_model_info{device="cpu",engine="torch",model="tiny-cifar"' in exposition
    assert "dynalay_request_duration_seconds_bucket{" in exposition
    assert 'le="+Inf"' in exposition
    actions = [
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith('dynalay_actions_total{action="')
    ]
    assert len(actions) == 4 and sum(actions) == 3  # all four actions pre-created, 3 answers


def test_promtool_check_metrics_passes(exposition):
    promtool = require_tool("promtool")
    result = run([promtool, "check", "metrics"], input=exposition)
    assert result.returncode == 0, result.stdout + result.stderr
