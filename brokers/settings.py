"""The `broker:` section of the config: which broker `tradingd run` trades through, and the
simulated broker's fill model (what every replay fills with)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from feeds.limits import MAX_BPS, MAX_MONEY

MAX_COMMISSION_PER_SHARE = Decimal(100)


class SimulatedBrokerSettings(BaseModel):
    """The `broker:` section: which broker `tradingd run` trades through, and the fill model.

    Attributes:
        type: the live broker adapter: `alpaca`, or `simulated` (Alpaca's data, simulated
            fills, no account). Unset, `live.mode` implies it (sim: simulated, else alpaca).
            A replay always simulates, with the fill model below, whatever the type.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["simulated", "alpaca"] = "simulated"
    fill_at: Literal["next_open", "close"] = "next_open"
    slippage_bps: float = Field(default=1.0, ge=0, lt=MAX_BPS, allow_inf_nan=False)
    commission_per_share: Decimal = Field(default=Decimal(0), ge=0, le=MAX_COMMISSION_PER_SHARE)
    commission_min: Decimal = Field(default=Decimal(0), ge=0, le=MAX_MONEY)
    commission_bps: float = Field(default=0.0, ge=0, le=MAX_BPS, allow_inf_nan=False)
    account: Literal["cash", "margin"] = "cash"
    max_volume_participation: float | None = Field(default=None, gt=0, le=1)
