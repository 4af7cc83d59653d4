"""Every Prometheus metric of the service, built on an injected registry.

Names, types and labels are a contract with the Grafana dashboard and the Prometheus alert rules
under deploy/ (tests/deploy checks that every query there names an exposed series) and with
tests/service/test_metrics.py: change them together. Each app (and so each test) gets its own
`CollectorRegistry`, so nothing is registered twice.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from model.actions import LAYER_NAMES, THESIS_ACTIONS

ANSWER_PATHS = ("straight", "looped")  # label values of dynalay_answer_duration_seconds
UNRESOLVED_MODEL = "none"  # label for answers given before a model was chosen (bounded labels)

# Seconds, from a fast GPU batch to a slow CPU request with a long queue.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ITERATION_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100)
EVALUATION_BUCKETS = (3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100, 200, 400)
# Multiply-adds per prediction: 1 M to 4 G in steps of ×√2 (a CIFAR pass is ~10⁸, a loop 1-4×).
MACS_BUCKETS = tuple(round(1e6 * 2 ** (k / 2)) for k in range(25))


class Metrics:
    """The service's collectors; attribute names are the metric names without `dynalay_`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.requests = Counter(
            "dynalay_requests_total",
            "Answered prediction requests (/predict, OIP infer over HTTP and gRPC) by HTTP "
            "status code; a gRPC answer counts under the HTTP status its code stands for.",
            ["model", "status"],
            registry=r,
        )
        self.grpc_requests = Counter(
            "dynalay_grpc_requests_total",
            "Answered gRPC ModelInfer calls by gRPC status code (also in requests_total).",
            ["model", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "dynalay_request_duration_seconds",
            "Server-side latency of /predict answers, every status.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_duration = Histogram(
            "dynalay_queue_duration_seconds",
            "Time a request waited in its model's request queue.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_duration = Histogram(
            "dynalay_compute_duration_seconds",
            "Time per section: preprocess per request, straight/agent/loop/head per batch.",
            ["model", "section"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "dynalay_batch_size",
            "Requests per executed batch.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.actions = Counter(
            "dynalay_actions_total",
            "Answered predictions by the action taken.",
            ["model", "action"],
            registry=r,
        )
        self.layer_loops = Counter(
            "dynalay_layer_loops_total",
            "Answered predictions that iterated this layer.",
            ["model", "layer"],
            registry=r,
        )
        self.fixed_point_iterations = Histogram(
            "dynalay_fixed_point_iterations",
            "Fixed-point iterations per prediction.",
            ["model", "action"],
            buckets=ITERATION_BUCKETS,
            registry=r,
        )
        self.fixed_point_unconverged = Counter(
            "dynalay_fixed_point_unconverged_total",
            "Predictions whose loop hit max_iter.",
            ["model"],
            registry=r,
        )
        self.layer_evaluations = Histogram(
            "dynalay_layer_evaluations",
            "Single-layer evaluations executed per prediction.",
            ["model"],
            buckets=EVALUATION_BUCKETS,
            registry=r,
        )
        self.macs = Histogram(
            "dynalay_macs",
            "Multiply-adds executed per prediction, the straight pass included.",
            ["model"],
            buckets=MACS_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "dynalay_queue_depth",
            "Requests waiting in the model's request queue.",
            ["model"],
            registry=r,
        )
        self.requests_in_progress = Gauge(
            "dynalay_requests_in_progress",
            "/predict requests being handled.",
            ["model"],
            registry=r,
        )
        self.loop_pool_occupancy = Gauge(
            "dynalay_loop_pool_occupancy",
            "Samples iterating in the loop pool (iteration scheduling).",
            ["model"],
            registry=r,
        )
        self.loop_pool_waiting = Gauge(
            "dynalay_loop_pool_waiting",
            "Samples past their straight pass waiting for room in the loop pool.",
            ["model"],
            registry=r,
        )
        self.loop_step_samples = Histogram(
            "dynalay_loop_step_samples",
            "Samples that ran one fixed-point iteration per loop step (iteration scheduling).",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.answer_duration = Histogram(
            "dynalay_answer_duration_seconds",
            "Arrival in the queue to the answer being ready, by path: straight (the agent kept "
            "the straight pass, or it was forced) or looped.",
            ["model", "path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "dynalay_model_info",
            "Loaded models (always 1), with the precision they compute in.",
            ["model", "version", "engine", "device", "precision"],
            registry=r,
        )

    def register_model(
        self,
        model: str,
        version: str,
        engine: str,
        device: str,
        actions: tuple[str, ...] = THESIS_ACTIONS,
        precision: str = "fp32",
    ) -> None:
        """Publish a loaded model and create its series at zero, so rates exist from the start;
        `actions`: the ones the model offers; `precision`: the one in force."""
        self.model_info.labels(model, version, engine, device, precision).set(1)
        for action in actions:
            self.actions.labels(model, action)
        for layer in LAYER_NAMES:
            self.layer_loops.labels(model, layer)
        self.fixed_point_unconverged.labels(model)
        self.grpc_requests.labels(model, "OK")
        self.queue_depth.labels(model).set(0)
        self.requests_in_progress.labels(model).set(0)
        self.loop_pool_occupancy.labels(model).set(0)
        self.loop_pool_waiting.labels(model).set(0)
        self.loop_step_samples.labels(model)
        for path in ANSWER_PATHS:
            self.answer_duration.labels(model, path)

    def observe_answer(self, model: str, status: int, seconds: float | None = None) -> None:
        self.requests.labels(model, str(status)).inc()
        if seconds is not None:
            self.request_duration.labels(model).observe(seconds)

    def observe_grpc_answer(self, model: str, code: str, status: int, seconds: float) -> None:
        """A gRPC infer answer: by its code, and in the protocol-wide counts by `status`."""
        self.grpc_requests.labels(model, code).inc()
        self.observe_answer(model, status, seconds)

    def answers_by_status(self) -> dict[str, int]:
        """Prediction answers so far by HTTP status, over all models (the shutdown log line)."""
        totals: dict[str, int] = {}
        for family in self.requests.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    status = sample.labels["status"]
                    totals[status] = totals.get(status, 0) + int(sample.value)
        return dict(sorted(totals.items()))

    def observe_prediction(
        self,
        model: str,
        action: str,
        looped_layers: tuple[str, ...],
        iterations: int,
        converged: bool,
        layer_evaluations: int,
        macs: int,
    ) -> None:
        """Record what one answered prediction did (called only for 200s, so counts match)."""
        self.actions.labels(model, action).inc()
        for layer in looped_layers:
            self.layer_loops.labels(model, layer).inc()
        self.fixed_point_iterations.labels(model, action).observe(iterations)
        if not converged:
            self.fixed_point_unconverged.labels(model).inc()
        self.layer_evaluations.labels(model).observe(layer_evaluations)
        self.macs.labels(model).observe(macs)

    def observe_section(self, model: str, section: str, seconds: float) -> None:
        self.compute_duration.labels(model, section).observe(seconds)

    def observe_answer_time(self, model: str, action: int, enqueued: float) -> None:
        """Arrival (time.monotonic() when queued) → now, for an answer of action id `action`."""
        path = ANSWER_PATHS[0] if action == 0 else ANSWER_PATHS[1]
        self.answer_duration.labels(model, path).observe(time.monotonic() - enqueued)

    def observe_loop_step(self, model: str, stepped: int, iterating: int, waiting: int) -> None:
        if stepped:
            self.loop_step_samples.labels(model).observe(stepped)
        self.loop_pool_occupancy.labels(model).set(iterating)
        self.loop_pool_waiting.labels(model).set(waiting)
