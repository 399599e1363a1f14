"""tradingd from Python: load a config, replay it, walk it forward, read the results as
DataFrames, and try a strategy written in a notebook cell.

```python
import tradingd

cfg = tradingd.load_config("config/base.yaml", "config/risk_balanced.yaml")
run = tradingd.replay(cfg)
run.equity["equity"].plot()
```

This package is the stable surface: it re-exports and adapts the daemon's parts (`feeds`,
`brokers`, `composer`, `portfolio`, `daemon`), whose own names may change between versions.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from composer.strategy import Strategy, strategy
from daemon.settings import Settings
from feeds.bar import Bar
from feeds.errors import ConfigError, SourceError, TradingdError
from tradingd.config import Config, load_config
from tradingd.run import Run, load_run, replay
from tradingd.strategies import register, strategy_names, unregister
from tradingd.walkforward import WalkForward, walkforward

try:
    __version__ = version("tradingd")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Bar",
    "Config",
    "ConfigError",
    "Run",
    "Settings",
    "SourceError",
    "Strategy",
    "TradingdError",
    "WalkForward",
    "__version__",
    "load_config",
    "load_run",
    "register",
    "replay",
    "strategy",
    "strategy_names",
    "unregister",
    "walkforward",
]
