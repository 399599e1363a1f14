"""The journal: what the core was fed, in order, and the order and fill books, in SQLite.

One file, `STATE_DIR/journal.sqlite3`, in WAL mode with `synchronous=NORMAL`: a process crash
(`kill -9`) loses nothing committed; a power cut may lose the last transactions, never corrupt.
One writer (`Journal`, under an exclusive `flock` on `STATE_DIR/journal.lock`); any number of
readers (`JournalReader`), opened read-only on the file or taken from the writer. The reader is
the only way to read a journal.

    segment   one daemon run: its config, its ledger at the start, the switches it found
    input     bar | warmup_bar | updated_bar | warmup_done | close | event | control, in order
    decision  per closed slice: the composed targets and the orders (and a flatten's orders)
    orders    one row per client order id: intent -> accepted -> filled/canceled/rejected
    fill      one row per execution id: the de-duplication key of fills
    state     last_slice_ts, last_event_ts, the kill switch latch, the halt flag
    account   the broker account the journal belongs to, stored once
    sequence  named counters that survive restarts (unique ids outside the slices)
    snapshot  the ledger and the switches at a session's close: a restart reads only after it
    archive   what compaction moved out of the file (to Parquet, or dropped)

Strategy and composer state are not stored: a restart rebuilds them by a warm-up through the
core (the recorded bars, or the broker's history), which is also what the audit replays.

Modules: `schema` (the DDL by version, the migrations, `JournalError`), `codec` (events,
orders, targets, ledger snapshots, positions to and from JSON), `writer` (`Journal`), `books`
(what an event changes in the order and fill books), `reader` (`JournalReader` and what it
returns), `retention` (compaction, the archive, stats).

Errors: every sqlite3 or OS error becomes a `JournalError` naming the file. The daemon stops
sending orders when a write fails: it never trades without a journal.
"""

from portfolio.journal.codec import (
    AccountIdentity,
    LedgerSnapshot,
    OrderRecord,
    decode_event,
    encode_event,
    positions_from_json,
    positions_to_json,
)
from portfolio.journal.reader import (
    DecisionRecord,
    Input,
    InputPayload,
    JournalReader,
    JournalState,
    Segment,
    Snapshot,
    SwitchName,
)
from portfolio.journal.schema import (
    JOURNAL_FILE,
    LOCK_FILE,
    MIGRATIONS,
    SCHEMA_VERSION,
    JournalError,
)
from portfolio.journal.writer import Journal

__all__ = [
    "JOURNAL_FILE",
    "LOCK_FILE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AccountIdentity",
    "DecisionRecord",
    "Input",
    "InputPayload",
    "Journal",
    "JournalError",
    "JournalReader",
    "JournalState",
    "LedgerSnapshot",
    "OrderRecord",
    "Segment",
    "Snapshot",
    "SwitchName",
    "decode_event",
    "encode_event",
    "positions_from_json",
    "positions_to_json",
]
