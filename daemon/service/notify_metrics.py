"""The notifier's counts as Prometheus counters, read at scrape time.

    tradingd_notifications_sent_total{target}        delivered
    tradingd_notifications_failed_total{target}      given up after every try (logged)
    tradingd_notifications_dropped_total{target}     pushed out of a full queue, or unsent at stop
    tradingd_notifications_suppressed_total{target}  held back by the rate limit (summarized)

The label's values are the configured targets' names: bounded by the configuration.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.service.notify.counters import NotifyCounters

_HELP = {
    "sent": "Notifications delivered, by target.",
    "failed": "Notifications given up after every try (a failed target), by target.",
    "dropped": "Notifications dropped from a full queue or left unsent at the stop, by target.",
    "suppressed": "Notifications held back by the rate limit and summarized, by target.",
}


class NotifyCollector(Collector):
    """`NotifyCounters` as the `tradingd_notifications_*_total` counters."""

    def __init__(self, counters: NotifyCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        for outcome, by_target in self.counters.snapshot().items():
            family = CounterMetricFamily(
                f"tradingd_notifications_{outcome}", _HELP[outcome], labels=("target",)
            )
            for target, count in sorted(by_target.items()):
                family.add_metric([target], count)
            yield family
