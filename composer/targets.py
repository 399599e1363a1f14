"""What the composer produces: target weights per symbol at a time."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Targets:
    """Composed target weights at `ts`.

    Attributes:
        ts: the slice time the targets were decided at (UTC ns, the slice's bar start).
        weights: signed target weight per symbol, as a fraction of equity; sum of absolute
            values never exceeds the composer's max gross.
        strategy_weights: the capital weight given to each strategy.
        by_strategy: each strategy's contribution to the symbol weights (already multiplied by
            its capital weight), for the decision trace.
        signals: each strategy's raw signals at `ts`.
    """

    ts: int
    weights: dict[str, float]
    strategy_weights: dict[str, float] = field(default_factory=dict)
    by_strategy: dict[str, dict[str, float]] = field(default_factory=dict)
    signals: dict[str, dict[str, float]] = field(default_factory=dict)
