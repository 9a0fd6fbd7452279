"""The fleet's Lua scripts: each runs in one round trip, on one region's slot. Pure: text only.

Per-driver keys are built inside the scripts from the region's prefix (``driver:{sf}:``); they
share the region's hash tag with the declared keys, so on a Redis Cluster they live on the same
slot (see keys.py). Replies are small integer codes that store.py turns into outcomes.
"""

from __future__ import annotations

from ontheway.fleet.search import CROWDING, DENSE_MIN_RING_M, LAST_STEP

# KEYS: locations, heartbeats, fixes counter, last fix times, drivers holding orders (the
# region's index, a superset of them: see keys.carrying). ARGV: prefix, ttl_s, then
# (id, lng, lat, ts) per fix. Reply: one code per fix: 0 applied, 1 stale, 2 not registered in
# this region.
# Redis spends its time per fix here, so the common case touches one key of the driver's own:
# the last fix times and the heartbeat deadlines are read for the whole batch at once, the
# status key's TTL is renewed by EXPIRE (its value follows the profile: the capacity scripts
# keep both), and the profile is read only when that key is gone (expired, offline, first fix)
# or no fix was stored yet. A heartbeat deadline is rewritten only once less than two thirds
# of the TTL remain of it: the sweep checks the status key's own TTL before it expires anyone.
# Whether a driver holds orders (its positions then go to the orders' tracking channels) is
# asked of the region's index for the whole batch too, not of each driver's set.
INGEST = """
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local deadline = tonumber(t[1]) + tonumber(t[2]) / 1000000 + ttl
local renew_before = deadline - ttl / 3
local ids = {}
for i = 3, #ARGV, 4 do ids[#ids + 1] = ARGV[i] end
local last, due, carrying = {}, {}, {}
for i = 1, #ids, 1000 do
  local chunk = {unpack(ids, i, math.min(i + 999, #ids))}
  for _, v in ipairs(redis.call('HMGET', KEYS[4], unpack(chunk))) do last[#last + 1] = v end
  for _, v in ipairs(redis.call('ZMSCORE', KEYS[2], unpack(chunk))) do due[#due + 1] = v end
  for _, v in ipairs(redis.call('SMISMEMBER', KEYS[5], unpack(chunk))) do
    carrying[#carrying + 1] = v
  end
end
local newest, stamps, geo, beats, out = {}, {}, {}, {}, {}
for k, id in ipairs(ids) do
  local i = 3 + (k - 1) * 4
  local ts = ARGV[i + 3]
  local prev = newest[id] or last[k]
  local code = 0
  if prev and tonumber(prev) >= tonumber(ts) then
    code = 1
  else
    local skey = prefix .. id .. ':status'
    if not prev or redis.call('EXPIRE', skey, ttl) == 0 then
      local p = redis.call('HMGET', prefix .. id .. ':profile', 'vehicle_type', 'status')
      if not p[1] then
        code = 2
      elseif p[2] ~= 'offline' then
        redis.call('SET', skey, p[2] or 'available', 'EX', ttl)
      end
    end
    if code == 0 then
      if not newest[id] then
        stamps[#stamps + 1] = id
      end
      newest[id] = ts
      geo[#geo + 1] = ARGV[i + 1]
      geo[#geo + 1] = ARGV[i + 2]
      geo[#geo + 1] = id
      if not due[k] or tonumber(due[k]) < renew_before then
        beats[#beats + 1] = deadline
        beats[#beats + 1] = id
        due[k] = deadline
      end
      if carrying[k] == 1 then
        local msg = cjson.encode({type = 'driver_location', driver_id = id,
          lat = tonumber(ARGV[i + 2]), lng = tonumber(ARGV[i + 1]), timestamp = tonumber(ts)})
        for _, order in ipairs(redis.call('SMEMBERS', prefix .. id .. ':active_orders')) do
          redis.call('PUBLISH', 'order:' .. order .. ':driver_location', msg)
        end
      end
    end
  end
  out[k] = code
end
-- Variadic writes, in chunks that stay below Lua's limit on unpacked arguments.
local times = {}
for _, id in ipairs(stamps) do
  times[#times + 1] = id
  times[#times + 1] = newest[id]
end
for i = 1, #times, 2000 do
  redis.call('HSET', KEYS[4], unpack(times, i, math.min(i + 1999, #times)))
end
for i = 1, #geo, 3000 do
  redis.call('GEOADD', KEYS[1], unpack(geo, i, math.min(i + 2999, #geo)))
end
for i = 1, #beats, 2000 do
  redis.call('ZADD', KEYS[2], unpack(beats, i, math.min(i + 1999, #beats)))
end
if #geo > 0 then redis.call('INCRBY', KEYS[3], #geo / 3) end
return out
"""

# KEYS: locations. ARGV: prefix, lng, lat, limit, first count, vehicle types ('' = any,
# else ',car,scooter,'), capacities ('bicycle=1,scooter=2,car=3'), the region's area (m2; 0:
# unknown), then the planned ring radii (m).
# Reply: [id, distance_m, lng, lat, vehicle_type, orders, rating, acceptance_rate] per driver,
# nearest first.
FIND_AVAILABLE = """
local prefix, lng, lat = ARGV[1], ARGV[2], ARGV[3]
local limit, count, types = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local caps = {}
for vt, n in string.gmatch(ARGV[7], '([%w_]+)=(%d+)') do caps[vt] = tonumber(n) end
-- Where drivers stand denser than the planned rings assume, smaller rings first: from the one
-- that would hold about count drivers were they @CROWDING@ times as dense as the region's
-- mean, doubling (see search.py).
local rings, area, first = {}, tonumber(ARGV[8]), tonumber(ARGV[9])
if area > 0 then
  local members = redis.call('ZCARD', KEYS[1])
  if members > 0 then
    local ring = math.max(@MIN_RING@, math.sqrt(count * area / (@CROWDING@ * math.pi * members)))
    while ring * @LAST_STEP@ < first do
      rings[#rings + 1] = ring
      ring = ring * 2
    end
  end
end
for ri = 9, #ARGV do rings[#rings + 1] = ARGV[ri] end
local seen, found = {}, {}
for _, radius in ipairs(rings) do
  while true do
    local res = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', lng, lat,
      'BYRADIUS', radius, 'm', 'ASC', 'COUNT', count, 'WITHDIST', 'WITHCOORD')
    for _, m in ipairs(res) do
      local id = m[1]
      if not seen[id] then
        seen[id] = true
        if redis.call('GET', prefix .. id .. ':status') == 'available' then
          local p = redis.call('HMGET', prefix .. id .. ':profile',
            'vehicle_type', 'orders', 'rating', 'acceptance_rate')
          local vt = p[1]
          if vt and (types == '' or string.find(types, ',' .. vt .. ',', 1, true)) then
            local n = tonumber(p[2] or '0') or 0
            if n < (caps[vt] or 1) then
              found[#found + 1] = {id, m[2], m[3][1], m[3][2], vt, n, p[3] or '', p[4] or ''}
              if #found >= limit then return found end
            end
          end
        end
      end
    end
    -- Fewer than asked: every member inside this ring has been judged; widen the ring.
    if #res < count then break end
    count = count * 4
  end
end
return found
""".replace("@MIN_RING@", repr(DENSE_MIN_RING_M)).replace("@LAST_STEP@", repr(LAST_STEP))
FIND_AVAILABLE = FIND_AVAILABLE.replace("@CROWDING@", repr(CROWDING))

# The body of ADD_ORDER, over the arguments A: prefix, id, order, then (vehicle_type,
# capacity) pairs. KEYS[1]: drivers holding orders (the region's index).
# Reply: {code, orders}: 0 added, 1 already held, 2 full, 3 unknown driver, 4 offline.
_ADD_ORDER_BODY = """
local prefix, id, order = A[1], A[2], A[3]
local caps = {}
for i = 4, #A, 2 do caps[A[i]] = tonumber(A[i + 1]) end
local pkey, okey = prefix .. id .. ':profile', prefix .. id .. ':active_orders'
local p = redis.call('HMGET', pkey, 'vehicle_type', 'status')
if not p[1] then return {3, 0} end
local n = redis.call('SCARD', okey)
if redis.call('SISMEMBER', okey, order) == 1 then return {1, n} end
if redis.call('EXISTS', prefix .. id .. ':status') == 0 then return {4, n} end
local cap = caps[p[1]] or 1
if n >= cap then return {2, n} end
redis.call('SADD', okey, order)
redis.call('SADD', KEYS[1], id)
n = n + 1
redis.call('HSET', pkey, 'orders', n)
if n >= cap then
  redis.call('HSET', pkey, 'status', 'busy')
  redis.call('SET', prefix .. id .. ':status', 'busy', 'XX', 'KEEPTTL')
end
return {0, n}
"""

# KEYS: drivers holding orders (the region's index). ARGV: prefix, id, order, then
# (vehicle_type, capacity) pairs. Reply: see _ADD_ORDER_BODY.
ADD_ORDER = "local A = ARGV\n" + _ADD_ORDER_BODY

# KEYS: drivers holding orders (the region's index), the order's assignment lock. ARGV: the
# lock's token, its ttl (s), then ADD_ORDER's. Takes the lock (SET NX EX), then adds the
# order as ADD_ORDER does; the lock is let go again when the driver is refused (codes 2-4).
# Reply: {5, 0} when someone else holds the lock, else ADD_ORDER's.
LOCK_AND_ADD_ORDER = (
    """
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then return {5, 0} end
local A = {unpack(ARGV, 3)}
local reply = (function()
"""
    + _ADD_ORDER_BODY
    + """
end)()
if reply[1] >= 2 then redis.call('DEL', KEYS[2]) end
return reply
"""
)

# KEYS: drivers holding orders (the region's index). ARGV: prefix, id, order, then
# (vehicle_type, capacity) pairs.
# Reply: {code, orders}: 0 removed, 1 was not held, 3 unknown driver.
REMOVE_ORDER = """
local prefix, id, order = ARGV[1], ARGV[2], ARGV[3]
local caps = {}
for i = 4, #ARGV, 2 do caps[ARGV[i]] = tonumber(ARGV[i + 1]) end
local pkey, okey = prefix .. id .. ':profile', prefix .. id .. ':active_orders'
local p = redis.call('HMGET', pkey, 'vehicle_type', 'status')
if not p[1] then return {3, 0} end
local removed = redis.call('SREM', okey, order)
local n = redis.call('SCARD', okey)
redis.call('HSET', pkey, 'orders', n)
if n == 0 then redis.call('SREM', KEYS[1], id) end
if removed == 1 and p[2] == 'busy' and n < (caps[p[1]] or 1) then
  redis.call('HSET', pkey, 'status', 'available')
  redis.call('SET', prefix .. id .. ':status', 'available', 'XX', 'KEEPTTL')
end
return {removed == 1 and 0 or 1, n}
"""

# KEYS: heartbeats. ARGV: prefix, id, wanted ('available' | 'offline'), ttl_s, then
# (vehicle_type, capacity) pairs. Reply: {code, status}: 0 set, 3 unknown, 5 holds orders.
SET_STATUS = """
local prefix, id, wanted, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local caps = {}
for i = 5, #ARGV, 2 do caps[ARGV[i]] = tonumber(ARGV[i + 1]) end
local pkey = prefix .. id .. ':profile'
local p = redis.call('HMGET', pkey, 'vehicle_type', 'orders')
if not p[1] then return {3, ''} end
local n = tonumber(p[2] or '0') or 0
if wanted == 'offline' then
  if n > 0 then return {5, 'busy'} end
  redis.call('HSET', pkey, 'status', 'offline')
  redis.call('DEL', prefix .. id .. ':status')
  redis.call('ZREM', KEYS[1], id)
  return {0, 'offline'}
end
local st = 'available'
if n >= (caps[p[1]] or 1) then st = 'busy' end
redis.call('HSET', pkey, 'status', st)
redis.call('SET', prefix .. id .. ':status', st, 'EX', ttl)
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) + tonumber(t[2]) / 1000000 + ttl, id)
return {0, st}
"""

# KEYS: drivers holding orders (the region's index), the driver's active orders. ARGV: the
# driver. Takes the driver out of the index if it holds no order (an entry left by a removal
# outside REMOVE_ORDER); atomic, so an order added meanwhile keeps it in.
FORGET_IDLE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.call('SREM', KEYS[1], ARGV[1]) end
return 0
"""

# KEYS: the lock. ARGV: the owner's token, then (channel, message) pairs to publish. Deletes
# the lock only for its owner (reply 1, else 0); publishes the messages either way.
RELEASE_LOCK = """
local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then released = redis.call('DEL', KEYS[1]) end
for i = 2, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end
return released
"""

# KEYS: locations, heartbeats, pending. ARGV: prefix, most drivers per call.
# Drivers whose heartbeat deadline has passed (and whose status key is gone) leave the map;
# those holding orders go to the pending set, which is emptied only by ACK_UNAVAILABLE once
# their DRIVER_UNAVAILABLE events are recorded: a monitor that restarts finds them again.
# Reply: every pending driver id, with its current active orders: {id, {orders...}, ...}.
SWEEP_EXPIRED = """
local prefix, most = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, most)
for _, id in ipairs(expired) do
  local left_ms = redis.call('PTTL', prefix .. id .. ':status')
  if left_ms > 0 then
    redis.call('ZADD', KEYS[2], now + left_ms / 1000, id)
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    if redis.call('SCARD', prefix .. id .. ':active_orders') > 0 then
      redis.call('ZADD', KEYS[3], 'NX', now, id)
    end
  end
end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, most - 1)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('SMEMBERS', prefix .. id .. ':active_orders')
end
return out
"""
