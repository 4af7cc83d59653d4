"""The service's metrics exist with their types and labels, and move as requests predict."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from model.actions import ACTIONS
from service.app import create_app
from service.core import Metrics
from tests.service.helpers import CIFAR_PNGS, serving, settings_for

# name -> (type, labels): what the dashboard, the alert rules and users' queries rely on
CONTRACT = {
    "dynalay_requests": ("counter", {"model", "status"}),
    "dynalay_request_duration_seconds": ("histogram", {"model"}),
    "dynalay_queue_duration_seconds": ("histogram", {"model"}),
    "dynalay_compute_duration_seconds": ("histogram", {"model", "section"}),
    "dynalay_batch_size": ("histogram", {"model"}),
    "dynalay_actions": ("counter", {"model", "action"}),
    "dynalay_layer_loops": ("counter", {"model", "layer"}),
    "dynalay_fixed_point_iterations": ("histogram", {"model", "action"}),
    "dynalay_fixed_point_unconverged": ("counter", {"model"}),
    "dynalay_layer_evaluations": ("histogram", {"model"}),
    "dynalay_macs": ("histogram", {"model"}),
    "dynalay_queue_depth": ("gauge", {"model"}),
    "dynalay_requests_in_progress": ("gauge", {"model"}),
    "dynalay_model_info": ("gauge", {"model", "version", "engine", "device", "precision"}),
}
FORCED = ["straight", "loop_l1", "loop_l1_l2", "loop_all", "straight", "loop_all"]


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def value(families, sample_name: str, **labels) -> float:
    name = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    for sample in families[name].samples:
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return 0.0


def test_every_contract_metric_has_its_type_and_labels():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.register_model("m", "1", "torch", "cpu")
    metrics.observe_answer("m", 200, 0.01)
    metrics.observe_prediction("m", "loop_l1", ("layer1",), 4, False, 8, 181_900_000)
    metrics.observe_section("m", "straight", 0.001)
    metrics.queue_duration.labels("m").observe(0.001)
    metrics.batch_size.labels("m").observe(2)
    families = {f.name: f for f in registry.collect()}
    for name, (kind, labels) in CONTRACT.items():
        assert families[name].type == kind, name
        sample_labels = {k for s in families[name].samples for k in s.labels} - {"le"}
        assert sample_labels == labels, name


def test_metric_values_after_known_requests(model_dir):
    with serving(create_app(settings_for(model_dir))) as client:
        answers = [
            client.post(
                "/predict",
                files={"file": ("x.png", CIFAR_PNGS[i].read_bytes(), "image/png")},
                data={"action": action},
            ).json()
            for i, action in enumerate(FORCED)
        ]
        free = client.post("/predict", files={"file": ("x.png", CIFAR_PNGS[0].read_bytes())})
        answers.append(free.json())
        client.post("/predict", content=b"x", headers={"content-type": "text/plain"})  # 415
        client.post("/predict", files={"file": ("x.png", b"not an image")})  # 400, model known
        families = scrape(client)

    m = {"model": "cifar10"}
    assert [a["action"] for a in answers[:-1]] == FORCED
    actions = {a: value(families, "dynalay_actions_total", action=a, **m) for a in ACTIONS}
    assert sum(actions.values()) == len(answers) == 7
    for action in ACTIONS:
        assert actions[action] == sum(a["action"] == action for a in answers)
    non_straight = sum(a["action"] != "straight" for a in answers)
    loops = {
        layer: value(families, "dynalay_layer_loops_total", layer=layer, **m)
        for layer in ("layer1", "layer2", "layer3")
    }
    assert loops["layer1"] == non_straight
    assert loops["layer2"] == sum(a["action"] in ("loop_l1_l2", "loop_all") for a in answers)
    assert loops["layer3"] == sum(a["action"] == "loop_all" for a in answers)

    assert value(families, "dynalay_requests_total", status="200", **m) == 7
    assert value(families, "dynalay_requests_total", model="none", status="415") == 1
    assert value(families, "dynalay_requests_total", status="400", **m) == 1
    assert value(families, "dynalay_request_duration_seconds_count", **m) == 8

    evaluations = sum(a["layer_evaluations"] for a in answers)
    assert value(families, "dynalay_layer_evaluations_sum", **m) == evaluations
    assert value(families, "dynalay_macs_sum", **m) == sum(a["macs"] for a in answers) > 0
    iterations = value(families, "dynalay_fixed_point_iterations_sum", action="loop_all", **m)
    assert iterations == sum(a["iterations"] for a in answers if a["action"] == "loop_all")
    unconverged = sum(not a["converged"] for a in answers)
    assert value(families, "dynalay_fixed_point_unconverged_total", **m) == unconverged

    batches = value(families, "dynalay_batch_size_count", **m)
    assert batches >= 1 and value(families, "dynalay_batch_size_sum", **m) == 7
    assert value(families, "dynalay_queue_duration_seconds_count", **m) == 7
    for section in ("preprocess", "straight", "agent", "loop", "head"):
        assert value(families, "dynalay_compute_duration_seconds_count", section=section, **m) >= 1
    assert value(families, "dynalay_queue_depth", **m) == 0
    assert value(families, "dynalay_requests_in_progress", **m) == 0
    info = {"version": "test-1", "engine": "torch", "device": "cpu", "precision": "fp32"}
    assert value(families, "dynalay_model_info", **info, **m) == 1


def test_each_app_has_its_own_registry(model_dir):
    first, second = create_app(settings_for(model_dir)), create_app(settings_for(model_dir))
    assert first.state.dynalay.metrics.registry is not second.state.dynalay.metrics.registry
