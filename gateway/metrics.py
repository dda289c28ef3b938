"""The daemon's metrics in Prometheus' terms, read at scrape time from what it already counts.

Nothing here runs on a hot path: the store's counts by state, the hub's
watcher count, each upstream's measures() and the tallies of gateway/stats.py
are kept anyway (the status document shows most of them), and this
collector only reads them when the metrics endpoint is scraped, on the
metrics thread. Imported only when the endpoint is on (prometheus_client
costs the daemon start time and memory).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from fxgate_contract.states import TaskState
from gateway import __version__
from gateway.core import Gateway
from gateway.stats import Histogram
from gateway.upstreams.base import BrokerMeasures, Measured, Measures

UPSTREAM = ["upstream"]


class GatewayCollector:
    """A prometheus_client collector of one daemon's metrics (registered in its own registry)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def collect(self) -> Iterator[Metric]:
        """Every metric, each a moment's view; called on the metrics thread at each scrape."""
        g = self._gateway
        yield InfoMetricFamily(
            "fxgate_build", "The fxgate version serving.", {"version": __version__}
        )
        yield GaugeMetricFamily(
            "fxgate_start_time_seconds", "When the daemon started (Unix time).", g.started
        )
        yield from self._store()
        yield GaugeMetricFamily(
            "fxgate_watchers",
            "Open watch streams: clients waiting for the results of a task group.",
            g.hub.watcher_count(),
        )
        yield _counter(
            "fxgate_results_received",
            "Results an upstream reported that were stored, since the daemon started "
            "(a result reported twice counts once; cancellations are not results).",
            dict.fromkeys(g.upstreams, 0) | g.results_stored.snapshot(),
        )
        yield from self._upstreams()
        yield _histogram(
            "fxgate_submit_tasks", "Tasks per Submit call accepted for a commit.", g.submit_tasks
        )

    def _store(self) -> Iterator[Metric]:
        store = self._gateway.store
        counts = store.upstream_state_counts()
        tasks = GaugeMetricFamily(
            "fxgate_tasks",
            "Stored tasks by upstream and state, as of the last commit.",
            labels=["upstream", "state"],
        )
        # Every state of every upstream, 0 included; and any upstream with stored tasks that
        # is no longer configured (its groups outlive it until released).
        for upstream in sorted(set(self._gateway.upstreams) | {u for u, _ in counts}):
            for state in TaskState:
                tasks.add_metric([upstream, state.name.lower()], counts.get((upstream, state), 0))
        yield tasks
        yield GaugeMetricFamily(
            "fxgate_task_groups", "Stored task groups, as of the last commit.", store.group_count()
        )
        yield GaugeMetricFamily(
            "fxgate_quarantined_messages",
            "Broker messages kept in the store's quarantine because they could not be used.",
            store.quarantine_count(),
        )
        seconds, writes = store.commit_histograms()
        yield _histogram(
            "fxgate_store_commit_seconds",
            "Seconds per group commit of the store-writer (its writes, then the commit).",
            seconds,
        )
        yield _histogram(
            "fxgate_store_commit_writes",
            "Writes per group commit (a write is one Submit's tasks, one result batch, ...).",
            writes,
        )

    def _upstreams(self) -> Iterator[Metric]:
        measured = {
            name: u.measures()
            for name, u in sorted(self._gateway.upstreams.items())
            if isinstance(u, Measured)
        }
        yield _per_upstream(
            "fxgate_upstream_queued_tasks",
            "Tasks waiting in the daemon to be sent to the upstream "
            "(local: for a worker; globus: for a submit request).",
            {n: m.queued for n, m in measured.items()},
        )
        yield _per_upstream(
            "fxgate_upstream_in_flight_tasks",
            "Tasks sent and not yet back (local: at worker processes; "
            "globus: in submit requests under way).",
            {n: m.in_flight for n, m in measured.items()},
        )
        yield from _optional(measured)
        brokers = {n: m.broker for n, m in measured.items() if m.broker is not None}
        yield from _brokers(brokers)


def _optional(measured: dict[str, Measures]) -> Iterator[Metric]:
    """The measures only some upstreams have: local workers, tasks Globus accepted."""
    workers = {n: m.workers for n, m in measured.items() if m.workers is not None}
    yield _per_upstream("fxgate_workers", "Worker processes running.", workers)
    submitted = {n: m.submitted for n, m in measured.items() if m.submitted is not None}
    yield _counter(
        "fxgate_upstream_submitted_tasks",
        "Tasks the upstream's web service accepted, since the daemon started.",
        submitted,
    )


def _brokers(brokers: dict[str, BrokerMeasures]) -> Iterator[Metric]:
    yield _per_upstream(
        "fxgate_broker_connected",
        "1 while the result broker connection is up, else 0.",
        {n: int(b.connected) for n, b in brokers.items()},
    )
    yield _counter(
        "fxgate_broker_messages_received",
        "Result messages taken from the broker since the daemon started (redeliveries included).",
        {n: b.received for n, b in brokers.items()},
    )
    yield _counter(
        "fxgate_broker_acks",
        "Result messages acknowledged to the broker (each after its result was committed).",
        {n: b.acked for n, b in brokers.items()},
    )
    yield _counter(
        "fxgate_broker_reconnects",
        "Connections to the result broker made after the first, since the daemon started.",
        {n: b.reconnects for n, b in brokers.items()},
    )


def _per_upstream(name: str, documentation: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=UPSTREAM)
    for upstream, value in sorted(values.items()):
        family.add_metric([upstream], value)
    return family


def _counter(name: str, documentation: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=UPSTREAM)
    for upstream, value in sorted(values.items()):
        family.add_metric([upstream], value)
    return family


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    cumulative, total = histogram.snapshot()
    bounds = [str(float(b)) for b in histogram.bounds] + ["+Inf"]
    return HistogramMetricFamily(
        name, documentation, buckets=list(zip(bounds, cumulative, strict=True)), sum_value=total
    )
