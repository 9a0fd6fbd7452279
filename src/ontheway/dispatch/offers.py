"""The offer book: open offers of orders to drivers, in Redis, answered atomically.

Keys (the region as hash tag, so each script touches one slot):

    order:{sf}:ord_...:offer          hash: driver_id, expires_at (unix s), state, message;
                                      exists from the offer until it is fully resolved
    order:{sf}:ord_...:offer_refused  set: drivers who declined or let the offer expire, kept
                                      ``refused_ttl_s`` after the last refusal
    offers:deadlines:{sf}             sorted set: order -> deadline, the OPEN offers
    offers:claimed:{sf}               sorted set: order -> when an answer claimed it, until
                                      that answer is recorded (a lease, see ``claim_due``)
    driver:{sf}:drv_...:offers        set: the driver's open offers (for reconnecting apps)

An offer is open while its order is in ``offers:deadlines``. Whoever removes it from there
(``ZREM`` inside a script) owns the answer: an accept, a decline or the expiry sweeper, never
two of them. The answer then sits in ``offers:claimed`` until it is recorded (PostgreSQL) and
``finish`` deletes the offer; a claim older than its lease is handed out again by
``claim_due``, so an answer cut short by a crash is completed by someone else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import redis.asyncio as aioredis

from ontheway.connections import dependency_errors
from ontheway.fleet import keys

# Extra life of the keys beyond the deadline: only a safety net, the sweeper deletes them.
KEY_GRACE_S = 3600
REFUSED_TTL_S = 300  # default of ``dispatch_refusal_memory_s``

_OPEN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 1 then return 2 end
redis.call('HSET', KEYS[1], 'driver_id', ARGV[2], 'expires_at', ARGV[3], 'state', 'open',
           'message', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('EXPIRE', KEYS[4], ARGV[5])
return 1
"""

# KEYS: offer, deadlines, claimed, refused, driver's offers, driver's active orders;
# ARGV: order, driver, now, state, refused TTL. An accept needs the reservation still there
# (the offline monitor releases the orders of a driver whose heartbeat expired).
_ANSWER = """
local refused = redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 1
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  if refused then return 2 end
  return 0
end
if redis.call('HGET', KEYS[1], 'driver_id') ~= ARGV[2] then
  if refused then return 2 end
  return 3
end
if tonumber(redis.call('HGET', KEYS[1], 'expires_at')) <= tonumber(ARGV[3]) then return 2 end
if ARGV[4] == 'accepting' and redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 0 then return 2 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[1], 'state', ARGV[4])
if ARGV[4] ~= 'accepting' then
  redis.call('SADD', KEYS[4], ARGV[2])
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
return 1
"""

# KEYS: deadlines, claimed; ARGV: now, stale claims before, most, order prefix, driver prefix,
# refused TTL. Returns order, driver, state triples.
_CLAIM_DUE = """
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, oid in ipairs(due) do
  if redis.call('ZREM', KEYS[1], oid) == 1 then
    local offer = ARGV[4] .. oid .. ':offer'
    local driver = redis.call('HGET', offer, 'driver_id')
    if driver then
      redis.call('HSET', offer, 'state', 'expiring')
      redis.call('SADD', ARGV[4] .. oid .. ':offer_refused', driver)
      redis.call('EXPIRE', ARGV[4] .. oid .. ':offer_refused', ARGV[6])
      redis.call('SREM', ARGV[5] .. driver .. ':offers', oid)
      redis.call('ZADD', KEYS[2], ARGV[1], oid)
      table.insert(out, oid); table.insert(out, driver); table.insert(out, 'expiring')
    end
  end
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
for _, oid in ipairs(stale) do
  local offer = ARGV[4] .. oid .. ':offer'
  local found = redis.call('HMGET', offer, 'driver_id', 'state')
  if found[1] then
    redis.call('ZADD', KEYS[2], ARGV[1], oid)
    table.insert(out, oid); table.insert(out, found[1]); table.insert(out, found[2])
  else
    redis.call('ZREM', KEYS[2], oid)
  end
end
return out
"""

_FINISH = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
return redis.call('DEL', KEYS[1])
"""


class Answer(IntEnum):
    """What ``OfferBook.answer`` found."""

    NONE = 0  # no open offer for the order
    CLAIMED = 1  # the offer was this driver's and is now claimed by the answer
    REFUSED = 2  # this driver's offer expired (or was declined) already
    OTHER = 3  # the open offer is another driver's


@dataclass(frozen=True)
class Claim:
    """An answer to record: ``state`` is accepting, declining or expiring."""

    region: str
    order_id: str
    driver_id: str
    state: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def offer_key(region: str, order_id: str) -> str:
    return f"order:{{{region}}}:{order_id}:offer"


def refused_key(region: str, order_id: str) -> str:
    return f"order:{{{region}}}:{order_id}:offer_refused"


def deadlines_key(region: str) -> str:
    return f"offers:deadlines:{{{region}}}"


def claimed_key(region: str) -> str:
    return f"offers:claimed:{{{region}}}"


def driver_offers_key(region: str, driver_id: str) -> str:
    return f"driver:{{{region}}}:{driver_id}:offers"


class OfferBook:
    """Open offers in Redis: open, answer, claim the expired ones, finish."""

    def __init__(
        self, redis: aioredis.Redis, *, lease_s: float = 30.0, refused_ttl_s: int = REFUSED_TTL_S
    ) -> None:
        self.redis = redis
        self.lease_s = lease_s
        # How long after its last refusal an order keeps its decliners out (then all of them
        # may be asked again: an order every driver nearby declined does not wait forever).
        self.refused_ttl_s = refused_ttl_s
        self._open = redis.register_script(_OPEN)
        self._answer = redis.register_script(_ANSWER)
        self._claim_due = redis.register_script(_CLAIM_DUE)
        self._finish = redis.register_script(_FINISH)

    async def open(
        self, region: str, order_id: str, driver_id: str, message: dict[str, Any]
    ) -> bool:
        """Store an offer (``message`` carries ``expires_at``); False if the order has one
        already or the driver refused it before."""
        expires_at = float(message["expires_at"])
        ttl_s = int(max(1.0, expires_at - _now())) + KEY_GRACE_S
        with dependency_errors("Redis"):
            code = await self._open(
                keys=[
                    offer_key(region, order_id),
                    deadlines_key(region),
                    refused_key(region, order_id),
                    driver_offers_key(region, driver_id),
                ],
                args=[order_id, driver_id, repr(expires_at), json.dumps(message), ttl_s],
            )
        return int(code) == 1

    async def answer(self, region: str, order_id: str, driver_id: str, state: str) -> Answer:
        """Claim the driver's open offer for an answer (``accepting`` or ``declining``):
        only that driver, only before the deadline, only once."""
        with dependency_errors("Redis"):
            code = await self._answer(
                keys=[
                    offer_key(region, order_id),
                    deadlines_key(region),
                    claimed_key(region),
                    refused_key(region, order_id),
                    driver_offers_key(region, driver_id),
                    keys.active_orders(region, driver_id),
                ],
                args=[order_id, driver_id, repr(_now()), state, self.refused_ttl_s],
            )
        return Answer(int(code))

    async def refuse(self, region: str, order_id: str, driver_id: str) -> None:
        """Do not offer this order to this driver again (for ``refused_ttl_s`` after the
        order's last refusal)."""
        key = refused_key(region, order_id)
        with dependency_errors("Redis"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.sadd(key, driver_id)
            pipe.expire(key, self.refused_ttl_s)
            await pipe.execute()

    async def claim_due(self, regions: Sequence[str], *, most: int = 500) -> list[Claim]:
        """Claim the regions' expired offers and the answers whose lease ran out (one round
        trip for all regions)."""
        now = _now()
        with dependency_errors("Redis"):
            pipe = self.redis.pipeline(transaction=False)
            for region in regions:
                await self._claim_due(
                    keys=[deadlines_key(region), claimed_key(region)],
                    args=[
                        repr(now),
                        repr(now - self.lease_s),
                        most,
                        f"order:{{{region}}}:",
                        keys.driver_prefix(region),
                        self.refused_ttl_s,
                    ],
                    client=pipe,
                )
            replies = await pipe.execute()
        found = []
        for region, flat in zip(regions, replies, strict=True):
            texts = [_text(x) for x in flat]
            found += [Claim(region, *texts[i : i + 3]) for i in range(0, len(texts), 3)]
        return found

    async def finish(self, region: str, order_id: str, driver_id: str) -> None:
        """Forget a resolved offer (idempotent)."""
        with dependency_errors("Redis"):
            await self._finish(
                keys=[
                    offer_key(region, order_id),
                    deadlines_key(region),
                    claimed_key(region),
                    driver_offers_key(region, driver_id),
                ],
                args=[order_id],
            )

    async def offered_to(self, region: str, order_id: str) -> str | None:
        """The driver the order's open offer went to, if any."""
        with dependency_errors("Redis"):
            found = await self.redis.hget(offer_key(region, order_id), "driver_id")
        return None if found is None else _text(found)

    async def pending(self, region: str, order_id: str) -> bool:
        """Whether the order has an offer open or being answered."""
        with dependency_errors("Redis"):
            return bool(await self.redis.exists(offer_key(region, order_id)))

    async def refused(self, region: str, order_id: str) -> set[str]:
        """Drivers who declined the order or let its offer expire."""
        with dependency_errors("Redis"):
            members = await self.redis.smembers(refused_key(region, order_id))
        return {_text(m) for m in members}

    async def open_for(self, region: str, driver_id: str) -> list[dict[str, Any]]:
        """The driver's open offers (the messages it was sent), soonest deadline first."""
        with dependency_errors("Redis"):
            order_ids = [
                _text(m) for m in await self.redis.smembers(driver_offers_key(region, driver_id))
            ]
            pipe = self.redis.pipeline(transaction=False)
            for order_id in order_ids:
                pipe.hmget(offer_key(region, order_id), ["driver_id", "state", "message"])
                pipe.zscore(deadlines_key(region), order_id)
            replies = await pipe.execute()
        now = _now()
        found = []
        for i in range(0, len(replies), 2):
            (driver, state, message), deadline = replies[i], replies[i + 1]
            if driver is None or _text(driver) != driver_id or _text(state) != "open":
                continue
            if deadline is None or float(deadline) <= now or message is None:
                continue
            found.append(json.loads(message))
        return sorted(found, key=lambda m: float(m["expires_at"]))


def _now() -> float:
    return time.time()
