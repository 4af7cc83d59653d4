"""Copies a replica's Prometheus registry into Ray's metrics, so one URL shows every replica.

Each replica keeps the service's own `Metrics` on its own `CollectorRegistry` (what its
/metrics shows). Every `interval_s` the bridge reads that registry and forwards what changed to
`ray.util.metrics`, which each node's Ray agent exports on its metrics port with the replica's
`WorkerId` label; summing over replicas gives the service's totals.

Mapping (Ray prefixes every name with `ray_`, and counters end in `_total`):

- a counter sample `dynalay_x_total` → Ray counter `dynalay_x_total`, incremented by its delta;
- a gauge `dynalay_x` → Ray gauge `dynalay_x`, set to its value (Ray forgets gauges that are not
  set again within a few report intervals, so every sync sets all of them);
- a histogram `dynalay_x` → three Ray counters `dynalay_x_bucket` (label `le`, the cumulative
  bucket counts), `dynalay_x_count` and `dynalay_x_sum`, incremented by their deltas.

Histograms go through counters rather than `ray.util.metrics.Histogram` because Ray's histogram
reports each sum from bucket midpoints (a batch of 1 would count as 0.5) and rejects a bucket at
0; counters of the cumulative buckets are exact, and `histogram_quantile` reads them the same.
The Prometheus scrape job `dynalay-ray` in deploy/prometheus renames `ray_dynalay_x_bucket_total`
back to `dynalay_x_bucket` (and so on), so the dashboard's queries work on either job.

Ray counters cannot be incremented by 0, so a series the service creates at 0 (every action,
from the start) appears at the Ray endpoint with its first increment; totals stay exact.
The bridge knows nothing about the service's metric names: any family the registry grows is
forwarded too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample

log = logging.getLogger(__name__)

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs of one series
HISTOGRAM_PARTS = ("_bucket", "_count", "_sum")


class CounterSink(Protocol):
    def inc(self, value: float, tags: dict[str, str]) -> None: ...


class GaugeSink(Protocol):
    def set(self, value: float, tags: dict[str, str]) -> None: ...


class MetricSinks(Protocol):
    """Where the bridge writes: Ray's metrics in a replica, a recorder in unit tests."""

    def counter(self, name: str, description: str, tag_keys: tuple[str, ...]) -> CounterSink: ...

    def gauge(self, name: str, description: str, tag_keys: tuple[str, ...]) -> GaugeSink: ...


class RayMetricSinks:
    """`ray.util.metrics` counters and gauges, created once per name."""

    def counter(self, name: str, description: str, tag_keys: tuple[str, ...]) -> CounterSink:
        from ray.util.metrics import Counter

        return Counter(name, description, tag_keys=tag_keys)

    def gauge(self, name: str, description: str, tag_keys: tuple[str, ...]) -> GaugeSink:
        from ray.util.metrics import Gauge

        return Gauge(name, description, tag_keys=tag_keys)


class RegistryBridge:
    """Forwards a registry's changes to metric sinks; `sync()` is one round."""

    def __init__(self, registry: CollectorRegistry, sinks: MetricSinks) -> None:
        self.registry = registry
        self.sinks = sinks
        self._counters: dict[str, CounterSink] = {}
        self._gauges: dict[str, GaugeSink] = {}
        self._sent: dict[tuple[str, Labels], float] = {}  # what each counter series has had

    def sync(self) -> None:
        for family in self.registry.collect():
            if family.type == "counter":
                self._forward_counters(family.documentation, _counter_samples(family.samples))
            elif family.type == "histogram":
                self._forward_counters(family.documentation, _histogram_samples(family.samples))
            elif family.type == "gauge":
                self._forward_gauges(family.documentation, family.samples)

    def _forward_counters(self, description: str, samples: Iterable[Sample]) -> None:
        for sample in samples:
            labels = _labels(sample)
            key = (sample.name, labels)
            delta = sample.value - self._sent.get(key, 0.0)
            if delta <= 0:
                continue  # unchanged (counters never go down within one registry)
            sink = self._sink(self._counters, self.sinks.counter, sample, description)
            sink.inc(delta, dict(labels))
            self._sent[key] = sample.value

    def _forward_gauges(self, description: str, samples: Iterable[Sample]) -> None:
        for sample in samples:
            sink = self._sink(self._gauges, self.sinks.gauge, sample, description)
            sink.set(sample.value, dict(_labels(sample)))

    @staticmethod
    def _sink(cache: dict, make: Callable, sample: Sample, description: str):
        sink = cache.get(sample.name)
        if sink is None:
            sink = cache[sample.name] = make(sample.name, description, tuple(sorted(sample.labels)))
        return sink


class PeriodicBridge:
    """Runs `RegistryBridge.sync` every `interval_s` on the running event loop."""

    def __init__(self, bridge: RegistryBridge, interval_s: float) -> None:
        self.bridge = bridge
        self.interval_s = interval_s
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="metrics-bridge")

    async def stop(self) -> None:
        """Stop, then one last sync so a drained replica's final answers are counted."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sync_logging_errors()

    async def _run(self) -> None:
        while True:
            self._sync_logging_errors()
            await asyncio.sleep(self.interval_s)

    def _sync_logging_errors(self) -> None:
        try:
            self.bridge.sync()  # ~1 ms for the service's few hundred series
        except Exception:  # a metrics hiccup must never take a replica down
            log.exception("forwarding metrics to Ray failed")


def _labels(sample: Sample) -> Labels:
    return tuple(sorted(sample.labels.items()))


def _counter_samples(samples: Iterable[Sample]) -> Iterable[Sample]:
    # `_created` is a timestamp, not a count.
    return (s for s in samples if s.name.endswith("_total"))


def _histogram_samples(samples: Iterable[Sample]) -> Iterable[Sample]:
    return (s for s in samples if s.name.endswith(HISTOGRAM_PARTS))
