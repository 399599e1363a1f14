"""`python -m daemon.cli`: the same as the `tradingd` console script."""

from daemon.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
