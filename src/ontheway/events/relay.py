"""The outbox relay: publishes each shard's ``order_events`` to the event stream, at least
once, in the order of the transactions that wrote them, from a cursor kept in PostgreSQL.

Why (txid, seq) and not seq alone: ``seq`` is taken when a row is inserted, not when its
transaction commits, so a slow transaction can commit a lower seq after the relay has moved
past it. The relay reads only rows of transactions older than every running one
(``pg_snapshot_xmin``): no row can appear behind the cursor later. Within one order the
order holds too, because every transaction that writes an order's event first touches the
order's row, so a later writer of the same order gets a later transaction id.

Several relays may run for one shard: the cursor's advisory lock lets one of them work at a
time. ``run_relay`` holds it for as long as its connection to the shard lives (a session
lock), so that a pass is one statement in autocommit and the stream's XADD: the read, with
the cursor's move past the previous pass's batch in the same statement (it was BEGIN, the
lock, the read, the move and COMMIT: five round trips); the others stand by, asking for the
lock at each pass, and one of them takes over when the holder's connection goes. A pass
that published is followed by another at once, so the cursor trails the stream by a few
milliseconds; a relay stopped cleanly writes its last move. A relay killed after publishing
and before moving its cursor publishes that batch again (at least once; consumers are
idempotent by event id); so the cursor's move needs no flush of its own to disk
(``synchronous_commit`` off for the relay's connection), and a move never takes the cursor
back (a relay that lost the lock meanwhile moves nothing).

Latency: a trigger on ``order_events`` sends ``NOTIFY outbox`` (delivered when the writing
transaction commits; 0005_outbox_notify.sql) and the relay LISTENs on each shard, so it wakes
at once instead of at its next poll. Polling stays as the fallback: every ``idle_s`` while a
shard's listener is not connected, every ``LISTENING_POLL_S`` otherwise. When committed rows
are held back by an older running transaction (which sends no notification when it ends),
the relay looks again after a few milliseconds, backing off. Passes are at least
``MIN_GAP_S`` apart, so that a burst of commits costs one batch rather than one pass each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import takewhile
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ontheway import tasks
from ontheway.connections import Connections, dependency_errors
from ontheway.events.bus import EventBus
from ontheway.events.model import EncodedEvent, wire_json

log = logging.getLogger(__name__)

CHANNEL = "outbox"

# The cursor is read by a row subquery, run once before the scan: the index on (txid, seq)
# then starts at the cursor. Joined to the cursor's table instead, the comparison was a join
# filter over every event below the snapshot's xmin, published or not: 133-161 ms a pass
# with 700,000 events against 0.05 ms this way; 44-56 ms against 0.07 ms for the check of
# events held back (scripts/bench-outbox-read.sql).
_CURSOR = "(SELECT c.last_txid, c.last_seq FROM outbox_cursor c WHERE c.stream = %s)"
_EVENTS_AFTER = (
    "SELECT e.event_id, e.order_id, e.event_type, e.ts, e.data::text AS data, e.actor, e.seq,"
    " e.txid::text AS txid, e.txid < pg_snapshot_xmin(pg_current_snapshot()) AS ready"
    " FROM order_events e WHERE (e.txid, e.seq) > {position}"
    " ORDER BY e.txid, e.seq LIMIT %s"
)
NEXT_EVENTS = _EVENTS_AFTER.format(position=_CURSOR)
"""The events past the cursor, in (txid, seq) order. Only the first ones that are ``ready``
(written by transactions older than every running one) may be published; a row that is not
means committed events are held back by an older transaction still running, and the rows
after it are not ready either (their transaction ids are larger)."""
MOVE_CURSOR = (
    "UPDATE outbox_cursor SET last_txid = %s::xid8, last_seq = %s,"
    " published = published + %s, updated_at = now()"
    " WHERE stream = %s AND (last_txid, last_seq) < (%s::xid8, %s)"
)
"""Never backwards: a relay that lost the cursor's lock meanwhile moves nothing."""
MOVE_THEN_NEXT = f"WITH moved AS ({MOVE_CURSOR}) " + _EVENTS_AFTER.format(position="(%s::xid8, %s)")
"""``run_relay``'s pass after one that published: the cursor's move past that batch and the
read of the events after it, in one statement (``NEXT_EVENTS`` from the batch's end)."""
LAG = (
    "SELECT count(*) AS n, min(e.ts) AS oldest,"
    " (SELECT true FROM outbox_cursor WHERE stream = %s) AS tracked"
    " FROM (SELECT ts FROM order_events e"
    f" WHERE (e.txid, e.seq) > {_CURSOR} ORDER BY e.txid, e.seq LIMIT 100000) e"
)
"""Unpublished events (up to 100,000), the oldest one's time, and whether the cursor exists
(without it nothing is read: counting from the start read up to 100,000 events per call)."""
APPLICATION_NAME = "ontheway-relay"
"""How the relay's own connections show in ``pg_stat_activity``."""
HELD_BACK_FIRST_S = 0.005  # held-back rows: look again after this, doubling up to the max
HELD_BACK_MAX_S = 0.05
MIN_GAP_S = 0.005  # at most one pass per 5 ms: commits arriving together share a batch
LISTENING_POLL_S = 1.0  # the fallback poll while every shard's listener is connected


@dataclass(frozen=True)
class RelayLag:
    """How far a shard's relay is behind: unpublished events and the age of the oldest."""

    shard: str
    events: int
    seconds: float


def _lock_key(shard: str) -> int:
    return zlib.crc32(f"outbox:{shard}".encode())


def cursor_name(stream: str, shard: str) -> str:
    """The name of the position kept for one destination stream and one shard."""
    return f"{stream}@{shard}"


async def relay_batch(
    conns: Connections, shard: str, bus: EventBus, cursor: str, limit: int = 500
) -> int:
    """Publish the next batch of one shard; returns how many events went out (0 if none
    or if another relay holds the cursor). ``cursor`` names the position kept in
    PostgreSQL (see ``cursor_name``). On a connection of the pool: the cursor's lock is
    taken for this batch and given back."""
    with dependency_errors(f"the orders shard {shard!r}"):
        async with conns.pool(shard).connection() as conn:  # in autocommit
            await _ensure_cursor(conn, cursor)
            if not await _lock(conn, cursor):
                return 0
            try:
                published, _, _ = await _publish_next(conn, shard, cursor, bus, limit)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(cursor),))
    return published


async def _ensure_cursor(conn: Any, cursor: str) -> None:
    await conn.execute(
        "INSERT INTO outbox_cursor (stream) VALUES (%s) ON CONFLICT DO NOTHING", (cursor,)
    )


async def _lock(conn: Any, cursor: str) -> bool:
    """Take the cursor's lock for the connection's session; False when another holds it."""
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(cursor),))
    row = await cur.fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class _Published:
    """A batch published whose cursor move is still to be written: the last event's
    (txid, seq) and how many events."""

    txid: str
    seq: int
    events: int

    def move(self, cursor: str) -> tuple[Any, ...]:
        """``MOVE_CURSOR``'s parameters."""
        return (self.txid, self.seq, self.events, cursor, self.txid, self.seq)


async def _publish_next(
    conn: Any,
    shard: str,
    cursor: str,
    bus: EventBus,
    limit: int,
    *,
    after: _Published | None = None,
    defer_move: bool = False,
) -> tuple[int, bool, _Published | None]:
    """One batch, under the cursor's lock, on a connection in autocommit; returns (events
    published, whether committed events wait behind an older running transaction, the
    batch whose cursor move is left to the caller).

    ``after``: the previous batch, whose move this pass writes with its read. ``defer_move``:
    the move past this batch is returned instead of written (``run_relay`` writes it with its
    next pass, a few milliseconds later: one round trip fewer per batch; a relay stopped in
    between publishes the batch again, as one killed between the stream and the cursor
    always did). A read alone takes no transaction id of its own, which would hold
    ``pg_snapshot_xmin`` back; one with a move takes it for the statement only."""
    cur = conn.cursor(row_factory=dict_row)
    if after is None:
        await cur.execute(NEXT_EVENTS, (cursor, limit))
    else:
        await cur.execute(MOVE_THEN_NEXT, (*after.move(cursor), after.txid, after.seq, limit))
    rows = await cur.fetchall()
    ready = list(takewhile(lambda row: row["ready"], rows))
    # Rows past the ready ones: an older transaction is still running. Nothing tells us
    # when it ends, so the caller looks again soon.
    held = len(ready) < len(rows)
    if not ready:
        return 0, held, None
    await bus.publish([_event(row, shard) for row in ready])
    last = ready[-1]
    published = _Published(last["txid"], last["seq"], len(ready))
    if defer_move:
        return len(ready), held, published
    await cur.execute(MOVE_CURSOR, published.move(cursor))
    return len(ready), held, None


class _ShardRelay:
    """``run_relay``'s hold on one shard: a connection of its own, in autocommit, holding
    the cursor's lock for as long as it lives (a relay standing by asks for it at each
    pass). A failed connection is dropped, with the lock; the next pass connects again.
    The cursor's move past a batch is written by the next pass (``_publish_next``), or by
    ``close``."""

    def __init__(self, conns: Connections, shard: str, cursor: str):
        self.conns, self.shard, self.cursor = conns, shard, cursor
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.leading = False
        self.unmoved: _Published | None = None

    async def relay(self, bus: EventBus, limit: int) -> tuple[int, bool]:
        """One pass; returns (events published, whether some are held back)."""
        with dependency_errors(f"the orders shard {self.shard!r}"):
            try:
                conn = await self._connection()
                if not self.leading:
                    self.leading = await _lock(conn, self.cursor)
                    if not self.leading:
                        return 0, False
                n, held, self.unmoved = await _publish_next(
                    conn, self.shard, self.cursor, bus, limit,
                    after=self.unmoved, defer_move=True,
                )  # fmt: skip
                return n, held
            except (psycopg.OperationalError, psycopg.InterfaceError):
                await self.close()
                raise

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self.conn is None or self.conn.closed:
            settings = self.conns.settings
            conn = await psycopg.AsyncConnection.connect(
                settings.dsn_for(self.shard),
                autocommit=True,
                connect_timeout=max(1, round(settings.dependency_timeout_s)),
                application_name=APPLICATION_NAME,
            )
            await conn.execute("SET synchronous_commit TO off")
            await _ensure_cursor(conn, self.cursor)
            self.conn, self.leading = conn, False
        return self.conn

    async def close(self) -> None:
        """Write the last batch's cursor move if the connection still can (else that batch
        is published again by whoever leads next), and let go of the connection."""
        conn, self.conn, self.leading = self.conn, None, False
        unmoved, self.unmoved = self.unmoved, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                if unmoved is not None and not conn.closed:
                    await conn.execute(MOVE_CURSOR, unmoved.move(self.cursor))
                await conn.close()


def _event(row: dict[str, Any], shard: str) -> EncodedEvent:
    """A row of ``NEXT_EVENTS`` in its wire form; its data, read as text, is not parsed."""
    wire = wire_json(
        str(row["event_id"]), row["order_id"], row["event_type"], row["ts"], row["data"],
        row["actor"], shard, row["seq"],
    )  # fmt: skip
    return EncodedEvent(row["order_id"], wire)


async def start_at_end(conns: Connections, shard: str, cursor: str) -> None:
    """Create ``cursor`` positioned before the oldest running transaction, so that it
    publishes what comes next and no history from before it (a few finished events may be
    published too: at least once, never fewer)."""
    with dependency_errors(f"the orders shard {shard!r}"):
        async with conns.pool(shard).connection() as conn:
            await conn.execute(
                "INSERT INTO outbox_cursor (stream, last_txid, last_seq)"
                " VALUES (%s, pg_snapshot_xmin(pg_current_snapshot()), 0)"
                " ON CONFLICT (stream) DO NOTHING",
                (cursor,),
            )
            await conn.commit()


async def relay_lag(conns: Connections, shard: str, cursor: str) -> RelayLag | None:
    """Unpublished events of a shard (counted up to 100,000) and the age of the oldest; None
    when no relay has run there with this cursor (it would start at the end: see
    ``start_at_end``)."""
    with dependency_errors(f"the orders shard {shard!r}"):
        async with conns.pool(shard).connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(LAG, (cursor, cursor))
            row = await cur.fetchone()
    assert row is not None
    if not row["tracked"]:
        return None
    oldest = row["oldest"]
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
    return RelayLag(shard, int(row["n"]), max(0.0, age))


async def run_relay(
    conns: Connections,
    bus: EventBus,
    stream: str,
    *,
    idle_s: float = 0.05,
    stop: asyncio.Event | None = None,
) -> None:
    """Relay every shard of ``conns`` until ``stop`` is set, woken by each shard's commits
    (LISTEN) and polling every ``idle_s`` besides; a shard that is down is retried with
    backoff while the others keep going."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    backoff = {shard: 0.0 for shard in conns.shards}
    relays = {shard: _ShardRelay(conns, shard, cursor_name(stream, shard)) for shard in backoff}
    wake = asyncio.Event()
    listening: set[str] = set()
    listeners = [
        asyncio.create_task(_listen(conns, shard, wake, listening)) for shard in conns.shards
    ]
    held_wait_s = HELD_BACK_FIRST_S
    last_pass = 0.0
    try:
        while not stop.is_set():
            if (gap := last_pass + MIN_GAP_S - loop.time()) > 0:
                await asyncio.sleep(gap)
            last_pass = loop.time()
            wake.clear()  # before reading: a commit during the batch wakes the next pass
            busy = held = False
            for shard, relay in relays.items():
                if backoff[shard] > loop.time():
                    continue
                try:
                    n, waiting = await relay.relay(bus, 500)
                    busy, held = busy or n > 0, held or waiting
                    backoff[shard] = 0.0
                except Exception as exc:  # recorded, retried; one bad shard must not stop others
                    log.warning("relay of shard %s failed: %s", shard, exc)
                    backoff[shard] = loop.time() + 1.0
            if busy:
                held_wait_s = HELD_BACK_FIRST_S
                continue
            poll_s = max(idle_s, LISTENING_POLL_S) if len(listening) == len(backoff) else idle_s
            wait_s = min(poll_s, held_wait_s) if held else poll_s
            # A shard that failed is tried again when its backoff ends, not at the next poll
            # (or commit) only.
            retries = [due for due in backoff.values() if due > 0.0]
            if retries:
                wait_s = max(0.0, min(wait_s, min(retries) - loop.time()))
            held_wait_s = min(HELD_BACK_MAX_S, held_wait_s * 2) if held else HELD_BACK_FIRST_S
            await _first_of(stop, wake, wait_s)
    finally:
        await tasks.stop(listeners)
        for relay in relays.values():
            await relay.close()


async def _first_of(stop: asyncio.Event, wake: asyncio.Event, timeout_s: float) -> None:
    """Return when either event is set, or after ``timeout_s``."""
    waits = [asyncio.create_task(e.wait()) for e in (stop, wake)]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()


async def _listen(conns: Connections, shard: str, wake: asyncio.Event, listening: set[str]) -> None:
    """LISTEN on the shard's outbox channel over a connection of its own and set ``wake``
    on every notification; reconnect after a failure (polling every ``idle_s`` covers the
    gap: ``listening`` holds the shards whose listener is connected)."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                conns.settings.dsn_for(shard),
                autocommit=True,
                connect_timeout=max(1, round(conns.settings.dependency_timeout_s)),
            ) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                listening.add(shard)
                wake.set()  # whatever committed before we listened
                async for _ in conn.notifies():
                    wake.set()
        except (psycopg.Error, OSError) as exc:
            listening.discard(shard)
            log.warning("relay cannot listen on shard %s (polling meanwhile): %s", shard, exc)
            await asyncio.sleep(1.0)
