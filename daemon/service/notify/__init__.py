"""Notifications: the daemon tells its owner what happens, on Slack, Discord, Telegram or any
JSON webhook, without ever waiting on them.

    events     the typed events (and the kinds a target switches on)
    messages   events into words and data
    settings   the `notify:` section
    apis       each service's HTTP API: the POST, and what its answer means
    throttle   repeated events held back and summarized
    watch      stream outages, told past a threshold while the market is open
    channel    one target: switches, rate limit, bounded queue, the worker that sends
    service    `Notifications`: notify(event), start, stop, send_test
    build      `build_notifications(settings, env, log)`, `send_test(...)`
    counters   sent, failed, dropped, suppressed per target (for telemetry)
    redact     secrets out of every logged string

aiohttp is imported when a notifier starts, so importing this package (the settings do) stays
light.
"""

from daemon.service.notify.build import build_notifications, notifications_of, send_test
from daemon.service.notify.counters import NotifyCounters, Outcome
from daemon.service.notify.events import (
    DaemonStarted,
    DaemonStopped,
    DaySummary,
    EventKind,
    JournalFailed,
    KillSwitchReset,
    NotifyEvent,
    Probe,
    ReconciliationDiffered,
    StreamDown,
    StreamRestored,
    TradingHalted,
    TradingResumed,
    kind_of,
)
from daemon.service.notify.messages import Message, render
from daemon.service.notify.service import Notifications, SendResult
from daemon.service.notify.settings import (
    DiscordTarget,
    EventSwitches,
    NotifySettings,
    RateLimit,
    SlackTarget,
    TargetSettings,
    TelegramTarget,
    WebhookTarget,
)

__all__ = [
    "DaemonStarted",
    "DaemonStopped",
    "DaySummary",
    "DiscordTarget",
    "EventKind",
    "EventSwitches",
    "JournalFailed",
    "KillSwitchReset",
    "Message",
    "Notifications",
    "NotifyCounters",
    "NotifyEvent",
    "NotifySettings",
    "Outcome",
    "Probe",
    "RateLimit",
    "ReconciliationDiffered",
    "SendResult",
    "SlackTarget",
    "StreamDown",
    "StreamRestored",
    "TargetSettings",
    "TelegramTarget",
    "TradingHalted",
    "TradingResumed",
    "WebhookTarget",
    "build_notifications",
    "kind_of",
    "notifications_of",
    "render",
    "send_test",
]
