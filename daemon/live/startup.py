"""What the live daemon checks and says before it trades: whose journal this is, what an empty
journal forgets, which positions leave the universe.

A journal is one account's history. It stores the account's identity (the broker's account id
and number, and the trading API's base URL) at its first start; a later start against another
account is refused with exit 2, whatever the clocks say (a new sandbox session or new keys can
have a later clock than the journal's last slice, and would otherwise be taken for a restart:
the old positions restored, the cash difference adopted, a phantom drawdown).

A journal with no segment is a fresh start. When the output folders show that this daemon traded
before (orders.csv or fills.csv with rows), the journal was emptied or deleted: a warning, since
the earlier positions and orders are then known only from the broker's account.

A position in a symbol no longer in the universe (a restart with a smaller one) has a target of
0: the next rebalance sells it, and one line per symbol says why.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from brokers.base import AccountSnapshot
from daemon.logs import EventLog
from feeds.errors import ConfigError
from portfolio.journal import AccountIdentity, Journal
from portfolio.ledger import Ledger

SIMULATED = AccountIdentity(
    account_id="simulated", account_number="simulated", base_url="simulated broker"
)
"""The identity of mode `sim`: the simulated broker has no account; its book is the journal's."""

_TRADE_FILES = ("orders.csv", "fills.csv")
_NAMED_FOLDERS = 5  # folders named in the warning (the count says how many there are)


async def check_start(
    journal: Journal,
    *,
    fresh: bool,
    account: Callable[[], Awaitable[AccountSnapshot]] | None,
    trading_url: str,
    out_dir: Path,
    out_root: Path,
    log: EventLog,
) -> None:
    """The checks before the journal is used: the account (`check_account`), and for a fresh
    journal the earlier outputs (`warn_if_emptied`). Call before the outputs are opened.

    Args:
        fresh: the journal has no segment yet.
        account: reads the broker's account; None for the simulated broker (mode sim).

    Raises:
        ConfigError: the journal belongs to another account.
    """
    identity = SIMULATED if account is None else identity_of(await account(), trading_url)
    check_account(journal, identity, log)
    if fresh:
        warn_if_emptied(journal, output_folders(out_dir, out_root), log)


def identity_of(account: AccountSnapshot, trading_url: str) -> AccountIdentity:
    """The identity of the broker's account, as a journal stores it."""
    return AccountIdentity(
        account_id=account.account_id,
        account_number=account.account_number,
        base_url=trading_url.rstrip("/"),
    )


def describe(identity: AccountIdentity) -> str:
    """`account NUMBER (id ID at URL)`: how messages name an account."""
    return (
        f"account {identity.account_number or '?'} "
        f"(id {identity.account_id or '?'} at {identity.base_url})"
    )


def check_account(journal: Journal, identity: AccountIdentity, log: EventLog) -> None:
    """Store the account's identity at the journal's first start; refuse another account.

    The account is the same when its id and number are; the base URL is stored and named,
    and a changed one (a proxy, say) is a warning.

    Raises:
        ConfigError: the journal belongs to another account (the message names both).
    """
    held = journal.reader().account()
    if held is None:
        journal.set_account(identity)
        log.info("journal_account", account=describe(identity), path=str(journal.path))
        return
    if (held.account_id, held.account_number) != (identity.account_id, identity.account_number):
        raise ConfigError(
            f"{journal.path}: this journal belongs to {describe(held)}, but the broker's is "
            f"{describe(identity)}: a journal never changes accounts; point state.dir "
            "elsewhere for this account (or remove the journal to start afresh)"
        )
    if held.base_url != identity.base_url:
        log.warning(
            "journal_account_url_changed",
            account=describe(held),
            journaled_url=held.base_url,
            url=identity.base_url,
        )


def traded_before(folders: Iterable[Path]) -> list[Path]:
    """The folders among `folders` whose orders.csv or fills.csv has rows (past its header)."""
    found: list[Path] = []
    for folder in folders:
        for name in _TRADE_FILES:
            if _has_rows(folder / name):
                found.append(folder)
                break
    return found


def output_folders(out_dir: Path, out_root: Path) -> list[Path]:
    """Where earlier runs wrote: this run's folder (`--out`, reused across restarts) and every
    folder under the configured `run.out_dir` (each run has its own there by default)."""
    folders = {out_dir}
    with contextlib.suppress(OSError):  # no earlier runs there
        folders.update(p for p in out_root.iterdir() if p.is_dir())
    return sorted(folders)


def warn_if_emptied(journal: Journal, folders: Iterable[Path], log: EventLog) -> None:
    """A fresh journal beside outputs that show trading: say so (not a silent fresh start)."""
    traded = traded_before(folders)
    if not traded:
        return
    log.warning(
        "journal_empty_after_trading",
        path=str(journal.path),
        folders=len(traded),
        traded_in=[str(p) for p in traded[-_NAMED_FOLDERS:]],
        action="starting afresh: the journal was emptied or deleted, so earlier orders and "
        "positions are known only from the broker's account (taken as the start, as "
        "state.unknown_positions says); restore the journal and restart if this was a mistake",
    )


def _has_rows(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.readline()  # the header
            return bool(handle.readline().strip())
    except OSError:
        return False


def log_leaving_universe(ledger: Ledger, symbols: Iterable[str], log: EventLog) -> None:
    """One line per held symbol outside the universe: why the next rebalance sells it."""
    universe = set(symbols)
    for symbol, position in sorted(ledger.positions.items()):
        if position.qty and symbol not in universe:
            log.info(
                "position_leaves_universe",
                symbol=symbol,
                qty=str(position.qty),
                reason=f"{symbol} is not in the universe (symbols): its target is 0, so the "
                "next rebalance sells the position",
            )
