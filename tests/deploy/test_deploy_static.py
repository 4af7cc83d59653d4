"""Static checks of the deploy files: compose, Prometheus config and rules, Grafana provisioning,
Dockerfile and .dockerignore. No Docker engine needed (none exists on CI machines)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy.deploy_helpers import (
    DASHBOARD,
    DEPLOY,
    PROMETHEUS_CONFIG,
    REPO,
    RULES,
    alert_expressions,
    dashboard_queries,
    import_service_app,
    metric_names,
    run,
    tool,
)

COMPOSE = REPO / "docker-compose.yml"
GPU_OVERRIDE = REPO / "docker-compose.override.yml"
VARIANTS = {"gpu": [COMPOSE, GPU_OVERRIDE], "cpu": [COMPOSE]}
DATASOURCE = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = DEPLOY / "grafana" / "provisioning" / "dashboards" / "dynalay.yml"


def compose_config(variant: str) -> dict:
    """`docker-compose config` of a variant: validates it and returns the merged file."""
    files = [arg for path in VARIANTS[variant] for arg in ("-f", str(path))]
    cmd = [tool("docker-compose"), *files, "--project-directory", str(REPO)]
    # Only the defaults written in the files: no .env or shell values leak into the check.
    env = {"PATH": "/usr/bin:/bin"}
    quiet = run([*cmd, "config", "-q"], cwd=REPO, env=env)
    assert quiet.returncode == 0, quiet.stderr
    merged = run([*cmd, "config"], cwd=REPO, env=env)
    assert merged.returncode == 0, merged.stderr
    return yaml.safe_load(merged.stdout)


def published_port(port: dict | str) -> tuple[str, int, int]:
    """(host_ip, published, target) from either form `docker-compose config` prints."""
    if isinstance(port, dict):
        return port.get("host_ip", ""), int(port["published"]), int(port["target"])
    parts = port.split("/")[0].split(":")  # "[ip:]published:target[/proto]"
    ip = parts[0] if len(parts) == 3 else ""
    return ip, int(parts[-2]), int(parts[-1])


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_compose_file_is_valid_and_complete(variant):
    config = compose_config(variant)
    services = config["services"]
    assert set(services) == {"dynalay", "prometheus", "grafana"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", name
    app = services["dynalay"]
    assert app["image"] == f"dynalay-serve:{variant}"
    assert app["build"]["args"]["VARIANT"] == variant
    assert app["environment"]["DYNALAY_HOST"] == "0.0.0.0"
    assert "/readyz" in " ".join(app["healthcheck"]["test"])
    assert app["stop_grace_period"] in {"30s", 30}
    assert app["init"] is True
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert services["prometheus"]["depends_on"]["dynalay"]["condition"] == "service_started"
    assert set(config["volumes"]) == {"prometheus-data", "grafana-data"}
    ports = {name: [published_port(p) for p in s["ports"]] for name, s in services.items()}
    assert ports == {
        "dynalay": [("", 8000, 8000), ("", 8001, 8001)],  # HTTP, gRPC
        "prometheus": [("127.0.0.1", 9090, 9090)],  # no auth on Prometheus: loopback only
        "grafana": [("127.0.0.1", 3000, 3000)],
    }

    devices = app.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    if variant == "gpu":
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
        assert app["environment"]["DYNALAY_DEVICE"] == "cuda"
    else:
        assert devices is None
        assert app["environment"]["DYNALAY_DEVICE"] == "cpu"


def test_compose_passes_every_service_setting_through():
    """Each DYNALAY_* setting the service reads can be set from .env or the shell."""
    _, settings = import_service_app()
    environment = yaml.safe_load(COMPOSE.read_text())["services"]["dynalay"]["environment"]
    expected = {f"DYNALAY_{name.upper()}" for name in settings.model_fields}
    assert expected <= set(environment), expected - set(environment)


def test_compose_mounts_match_the_deploy_files():
    services = compose_config("gpu")["services"]

    def mounts(service: str) -> dict[str, str]:
        out = {}
        for volume in services[service]["volumes"]:
            if isinstance(volume, str):  # "source:target[:mode]"
                source, target = volume.split(":")[:2]
            else:
                source, target = volume["source"], volume["target"]
            out[target] = source
        return out

    prometheus, grafana = mounts("prometheus"), mounts("grafana")
    assert Path(prometheus["/etc/prometheus"]) == PROMETHEUS_CONFIG.parent
    assert prometheus["/prometheus"] == "prometheus-data"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert Path(grafana["/etc/grafana/provisioning"]) == DEPLOY / "grafana" / "provisioning"
    assert grafana["/var/lib/grafana"] == "grafana-data"
    provider = yaml.safe_load(DASHBOARD_PROVIDER.read_text())["providers"][0]
    assert Path(grafana[provider["options"]["path"]]) == DASHBOARD.parent

    scrape = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    targets = [t for job in scrape if job["job_name"] == "dynalay" for t in job["static_configs"]]
    assert targets == [{"targets": ["dynalay:8000"]}]  # the compose service name and port
    datasource = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"


def test_compose_v2_accepts_the_files_when_installed():
    """Compose v2 (the `docker compose` plugin) is what users run; CI machines may lack it."""
    docker = shutil.which("docker")
    if docker is None or run([docker, "compose", "version"]).returncode != 0:
        pytest.skip("the `docker compose` v2 plugin is not installed")
    for variant, files in VARIANTS.items():
        cmd = [docker, "compose", *[a for f in files for a in ("-f", str(f))], "config", "-q"]
        result = run(cmd, cwd=REPO, env={"PATH": "/usr/bin:/bin:/usr/local/bin"})
        assert result.returncode == 0, f"{variant}: {result.stderr}"


def test_promtool_check_config_and_rules():
    promtool = tool("promtool")
    config = run([promtool, "check", "config", str(PROMETHEUS_CONFIG)])
    assert config.returncode == 0, config.stdout + config.stderr
    rules = run([promtool, "check", "rules", str(RULES)])
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_alert_rules_fire_in_promtool_unit_tests():
    """Each alert fires on a synthetic bad series and not on a healthy one."""
    promtool = tool("promtool")
    test_file = Path(__file__).with_name("prometheus_rules_test.yml")
    result = run([promtool, "test", "rules", test_file.name], cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", test_file.read_text()))
    assert tested == {name.removeprefix("rule ") for name, _ in alert_expressions()}


def test_dashboard_is_provisionable():
    dash = json.loads(DASHBOARD.read_text())
    text = DASHBOARD.read_text()
    # An "exported for sharing" dashboard fails under file provisioning (grafana#10786).
    assert "__inputs" not in dash and "${DS_" not in text
    uid = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]["uid"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel.get("description"), f"{panel['title']} has no description"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
            assert target["expr"].strip(), panel["title"]
    for var in dash["templating"]["list"]:
        assert var["datasource"]["uid"] == uid


def test_dashboard_covers_traffic_latency_and_depth():
    """The traffic, latency, batching and adaptive-depth panels are there, each reading the
    metric it is about."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in panels}
    wanted = {
        "Request rate by status": "dynalay_requests_total",
        "Errors by status": "dynalay_requests_total",
        "Request latency p50 / p95 / p99": "dynalay_request_duration_seconds_bucket",
        "Queue wait p50 / p95 / p99": "dynalay_queue_duration_seconds_bucket",
        "Batch size (mean, p95)": "dynalay_batch_size_sum",
        "Actions over time": "dynalay_actions_total",
        "Layers looped": "dynalay_layer_loops_total",
        "Fixed-point iterations per action (p50 / p95)": "dynalay_fixed_point_iterations_bucket",
        "Unconverged loops": "dynalay_fixed_point_unconverged_total",
        "Compute per request (layer evaluations)": "dynalay_layer_evaluations_sum",
        "Queue depth and requests in progress": "dynalay_queue_depth",
        "Loaded models": "dynalay_model_info",
    }
    for title, metric in wanted.items():
        assert title in exprs, f"no panel {title!r}"
        assert metric in metric_names(exprs[title]), title
    assert json.loads(DASHBOARD.read_text())["templating"]["list"][0]["name"] == "model"


def test_dashboard_shows_the_loop_scheduling():
    """Pool occupancy, samples per loop step, and time to the straight and to the looped answer."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in panels}
    wanted = {
        "Time to answer: straight vs looped (p50 / p99)": "dynalay_answer_duration_seconds_bucket",
        "Loop pool occupancy and waiting": "dynalay_loop_pool_occupancy",
        "Samples per loop step (mean, p95)": "dynalay_loop_step_samples_sum",
        "Loop steps / s": "dynalay_loop_step_samples_count",
    }
    for title, metric in wanted.items():
        assert title in exprs, f"no panel {title!r}"
        assert metric in metric_names(exprs[title]), title
    answers = exprs["Time to answer: straight vs looped (p50 / p99)"]
    assert 'path="straight"' in answers and 'path="looped"' in answers
    assert "dynalay_loop_pool_waiting" in metric_names(exprs["Loop pool occupancy and waiting"])


def test_every_query_names_a_metric():
    for where, expr in dashboard_queries() + alert_expressions():
        assert metric_names(expr), f"{where}: no metric found in {expr!r}"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_conventions():
    instructions = dockerfile_instructions()
    froms = [arg for op, arg in instructions if op == "FROM"]
    stages = {f.split(" AS ")[1] for f in froms if " AS " in f}
    assert {"build-cpu", "build-gpu", "runtime-cpu", "runtime-gpu", "final"} <= stages
    assert froms[-1] == "runtime-${VARIANT} AS final"
    args = {arg.split("=")[0]: arg for op, arg in instructions if op == "ARG"}
    assert args["VARIANT"] == "VARIANT=gpu"
    assert "nvidia/cuda:" in args["CUDA_IMAGE"] and "runtime" in args["CUDA_IMAGE"]
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    final_ops = dict(final)
    assert final_ops["USER"].split(":")[0] not in {"0", "root"}
    assert json.loads(final_ops["ENTRYPOINT"]) == ["python", "-m", "service"]  # exec form
    assert "CMD" not in final_ops or final_ops["CMD"].startswith("[")
    health = final_ops["HEALTHCHECK"]
    assert "/readyz" in health and "urllib.request" in health and "curl" not in health
    assert any(op == "COPY" and arg.startswith("checkpoints/") for op, arg in final)
    assert "DYNALAY_MODEL_DIR=/opt/dynalay/checkpoints" in final_ops["ENV"]
    assert "DYNALAY_HOST=0.0.0.0" in final_ops["ENV"]


SERVING_EXTRAS = {"onnx", "gpu"}


def test_image_installs_core_and_serving_extras_only():
    """Every `pip install` of the project in the Dockerfile asks for core plus serving extras,
    and those extras hold no training-only library."""
    project_installs = [
        arg
        for op, arg in dockerfile_instructions()
        if op == "RUN" and "pip install" in arg and '"torch==' not in arg
    ]
    assert len(project_installs) == 2, project_installs  # one per variant
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for install in project_installs:
        extras = re.fullmatch(r'pip install "\.(?:\[([a-z,]+)\])?"', install.strip())
        assert extras, install
        asked = set(extras.group(1).split(",")) if extras.group(1) else set()
        assert asked <= SERVING_EXTRAS, install
        for name in asked:
            assert not any(r.startswith(("matplotlib", "torchdeq")) for r in optional[name])


def test_healthcheck_one_liner_is_valid_python():
    _, health = next(i for i in dockerfile_instructions() if i[0] == "HEALTHCHECK")
    argv = json.loads(health[health.index("CMD") + 3 :].strip())
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    test = compose["services"]["dynalay"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    compile(test[3], "<compose healthcheck>", "exec")


# docker-py (python3-docker, a dependency of Debian's docker-compose) applies .dockerignore
# the way `docker build` does; run it with the system Python that has it.
DOCKERIGNORE_PROBE = """
import json, sys
from docker.utils.build import exclude_paths
patterns = [l.strip() for l in open(sys.argv[1] + "/.dockerignore") if l.strip()
            and not l.startswith("#")]
print(json.dumps(sorted(exclude_paths(sys.argv[1], patterns))))
"""


def test_dockerignore_keeps_the_build_context_small():
    tool("docker-compose")
    python = "/usr/bin/python3"
    probe = subprocess.run(
        [python, "-c", DOCKERIGNORE_PROBE, str(REPO)], capture_output=True, text=True, timeout=120
    )
    if probe.returncode != 0 and "No module named 'docker'" in probe.stderr:
        pytest.skip("python3-docker (a docker-compose dependency) is not installed")
    assert probe.returncode == 0, probe.stderr
    context = json.loads(probe.stdout)
    top = {path.split("/")[0] for path in context}
    assert {"pyproject.toml", "model", "service"} <= top, shlex.join(sorted(top))
    # The builder always sends the Dockerfile and .dockerignore themselves.
    allowed = {"pyproject.toml", "README.md", "model", "service", "checkpoints"}
    assert top <= allowed | {"Dockerfile", ".dockerignore"}, top
    assert not [p for p in context if "__pycache__" in p or p.endswith(".pyc")]
    # Everything the Dockerfile COPYs from the context must be in it.
    for op, arg in dockerfile_instructions():
        if op == "COPY" and not arg.startswith("--from"):
            for source in arg.split()[:-1]:
                assert source.rstrip("/") in top or not (REPO / source).exists(), source
