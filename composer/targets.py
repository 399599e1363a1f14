"""What the composer produces: target weights per symbol at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Targets:
    """Composed target weights at `ts`.

    Attributes:
        ts: the slice time the targets were decided at (UTC ns, the slice's bar start).
        weights: signed target weight per symbol, as a fraction of equity; sum of absolute
            values never exceeds the composer's max gross.
        strategy_weights: the capital weight given to each strategy.
        signals: each strategy's raw signals at `ts`.
        shares: each strategy's share of its capital per symbol (the composition method's
            allocation; strategies often share one dict).
        symbols: the symbols each strategy trades, in its order (strategies often share one
            tuple).
        recorded: each strategy's contributions as an older journal stored them (it kept
            them instead of the shares); None otherwise. See `by_strategy`.
    """

    ts: int
    weights: dict[str, float]
    strategy_weights: dict[str, float] = field(default_factory=dict)
    signals: dict[str, dict[str, float]] = field(default_factory=dict)
    shares: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    symbols: Mapping[str, Sequence[str]] = field(default_factory=dict)
    recorded: dict[str, dict[str, float]] | None = None

    @property
    def by_strategy(self) -> dict[str, dict[str, float]]:
        """Each strategy's contribution to the symbol weights, for the decision trace:
        capital weight x signal x share, before vol targeting and the gross cap. The
        composer's own products, computed again on read (the same floats: it multiplies in
        this order), so a decision does not build them for a reader that may never come."""
        if self.recorded is not None:
            return self.recorded
        w_of = self.strategy_weights
        signals = self.signals
        shares = self.shares
        out: dict[str, dict[str, float]] = {}
        for sid, syms in self.symbols.items():
            w = w_of[sid]
            sig = signals[sid]
            a = shares[sid]
            out[sid] = {sym: w * sig[sym] * a[sym] for sym in syms}
        return out
