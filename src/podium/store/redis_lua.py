"""The Lua scripts of the Redis backend: each store call is one script, so each is atomic on the server.

Every key starts with the deployment's prefix ``P`` (``ARGV[1]``). Names of kinds and queues carry their
byte length where something follows them, so no two (kind, id) or (queue, id) pairs can share a key::

    P meta                      hash: schema (the layout version)
    P seq / P fence / P hseq    counters: queue order, fencing tokens (queues and locks), history sequence
    P r:<#kind>:<kind>:<id>     hash, one record: v version, s status, g group, c created, u updated, d data
    P k:<kind>                  zset (lexical, score 0) of a kind's ids: listing in id order
    P ks:<#kind>:<kind>:<st>    zset of the ids with that status       P kg:<#kind>:<kind>:<grp>   ... group
    P qi:<#queue>:<queue>:<id>  hash, one queue item: p payload, np -priority, sq seq, e enqueued at,
                                d due (delay or lease expiry), l leased 0/1, t token, o owner, a attempts
    P qr:<queue>                zset of ready items: score -priority, member hex(seq)..id (FIFO in a score)
    P qd:<queue> / P ql:<queue> zsets of delayed / leased items by due time (member id)
    P l:<name>                  hash, one lock: o owner, t token, x expires at
    P h                         stream of history entries, id <seq>-0: j subject, e event, s status, t ts, d data
    P hs:<subject> / P he:<event> / P ht:<status>    zsets of history seqs (score = member = seq)
    P qw:<queue>                set of the tags of the instances whose last take on the queue found nothing
    channel P wake@<tag>        "<queue>" after an enqueue or a nack on a queue whose waiting set (P qw:) held
                                that instance's tag (then emptied): wakes its takers; each instance listens on
                                its own channel from open() on, so no wake-up waits on a subscription
    channel P wake:<class>      "<instance tag> <name>" after a Wake op, on the channel of the name's class (its
                                text up to the first ``:``, ``job-end`` say): only stores watching a name
                                of that class subscribe to it
    P wk                        zset of the names of the Wake ops of the last WAKE_KEEP_S seconds, by time
                                (what a store that was subscribing meanwhile looks up: it may have missed them)

Time is always ``ARGV[2]``, the caller's clock (never Redis ``TIME``), passed as text with all its digits;
times the scripts store are those texts (Lua would print numbers with 14 digits). Optional strings travel as
``''`` (none) or ``'=' .. value``. Data and payloads are opaque JSON text: Lua never decodes them.
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "APPLY",
    "COUNT",
    "DEPTH",
    "EXTEND",
    "GET_MANY",
    "HISTORY",
    "LIST",
    "NACK",
    "NEXT_DUE",
    "REFRESH",
    "RELEASE",
    "TAKE",
    "WOKEN",
]

WAKE_KEEP_S = 10
"""How long a Wake op's name is kept in ``P wk`` (for a store whose subscription was on its way)."""

_PRELUDE = (
    """
local P = ARGV[1]
local now = ARGV[2]
local nnow = tonumber(now)
local function rkey(kind, id) return P .. 'r:' .. #kind .. ':' .. kind .. ':' .. id end
local function kidx(kind) return P .. 'k:' .. kind end
local function sidx(kind, s) return P .. 'ks:' .. #kind .. ':' .. kind .. ':' .. s end
local function gidx(kind, g) return P .. 'kg:' .. #kind .. ':' .. kind .. ':' .. g end
local function ikey(q, id) return P .. 'qi:' .. #q .. ':' .. q .. ':' .. id end
local function rq(q) return P .. 'qr:' .. q end
local function dq(q) return P .. 'qd:' .. q end
local function lq(q) return P .. 'ql:' .. q end
local function member(seq, id) return string.format('%016x', tonumber(seq)) .. id end
local function opt(v) if v then return '=' .. v end return '' end
local function unopt(s) if s == '' then return false end return string.sub(s, 2) end
local function held(q, id, token)
  local it = redis.call('HMGET', ikey(q, id), 'l', 't', 'd')
  return it[1] == '1' and it[2] == token and tonumber(it[3]) > nnow
end
-- An enqueue or a nack on q: the instances whose take on q last found nothing hear it (each on its own
-- channel), once; the caller (tag) wakes its own takers in place.
local function wake(tag, q)
  local key = P .. 'qw:' .. q
  local tags = redis.call('SMEMBERS', key)
  if #tags > 0 then
    redis.call('DEL', key)
    for _, t in ipairs(tags) do
      if t ~= tag then redis.call('PUBLISH', P .. 'wake@' .. t, q) end
    end
  end
end
local function wake_name(tag, name)
  redis.call('ZADD', P .. 'wk', now, name)
  redis.call('ZREMRANGEBYSCORE', P .. 'wk', '-inf', '(' .. (nnow - """
    + str(WAKE_KEEP_S)
    + """))
  redis.call('PUBLISH', P .. 'wake:' .. string.match(name, '^[^:]*'), tag .. ' ' .. name)
end
-- Delayed items and expired leases that are due now become ready (a lease's owner is forgotten).
local function promote(q)
  for _, key in ipairs({dq(q), lq(q)}) do
    local ids = redis.call('ZRANGEBYSCORE', key, '-inf', now)
    if #ids > 0 then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      for _, id in ipairs(ids) do
        local ik = ikey(q, id)
        local it = redis.call('HMGET', ik, 'np', 'sq')
        redis.call('HSET', ik, 'l', '0', 'o', '')
        redis.call('ZADD', rq(q), it[1], member(it[2], id))
      end
    end
  end
end
"""
)

APPLY = (
    _PRELUDE
    + """
-- ARGV: P, now, tag, then the operations, each a code and a fixed number of fields:
--   P kind id expected status group data      D kind id expected      Q queue id      A queue id token
--   E queue id payload -priority due lease_owner lease_due            H subject event status data
--   W name (publish a wake-up for that name, on its class's channel, once the rest is written)
-- Every precondition is checked before anything is written: a failing batch changes nothing.
local ARITY = {P = 6, D = 3, E = 7, Q = 2, A = 3, H = 4, W = 1}
local ops = {}
local i = 4
while i <= #ARGV do
  local code = ARGV[i]
  ops[#ops + 1] = i
  i = i + 1 + ARITY[code]
end
for n, at in ipairs(ops) do
  local code = ARGV[at]
  if (code == 'P' or code == 'D') and ARGV[at + 3] ~= '' then
    local v = redis.call('HGET', rkey(ARGV[at + 1], ARGV[at + 2]), 'v')
    local actual = v and tonumber(v) or 0
    if actual ~= tonumber(ARGV[at + 3]) then return {'conflict', n, actual} end
  elseif code == 'A' and not held(ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]) then
    return {'lost', n}
  end
end
local out = {'ok'}
local woken, named = {}, {}
for n, at in ipairs(ops) do
  local code = ARGV[at]
  local r
  if code == 'H' then
    local seq = redis.call('INCR', P .. 'hseq')
    local subject, event, status = ARGV[at + 1], ARGV[at + 2], unopt(ARGV[at + 3])
    if status then
      redis.call('XADD', P .. 'h', seq .. '-0', 'j', subject, 'e', event, 't', now, 'd', ARGV[at + 4], 's', status)
      redis.call('ZADD', P .. 'ht:' .. status, seq, seq)
    else
      redis.call('XADD', P .. 'h', seq .. '-0', 'j', subject, 'e', event, 't', now, 'd', ARGV[at + 4])
    end
    redis.call('ZADD', P .. 'hs:' .. subject, seq, seq)
    redis.call('ZADD', P .. 'he:' .. event, seq, seq)
    r = seq
  elseif code == 'P' then
    local kind, id, status, group = ARGV[at + 1], ARGV[at + 2], unopt(ARGV[at + 4]), unopt(ARGV[at + 5])
    local key = rkey(kind, id)
    local old = redis.call('HMGET', key, 'v', 's', 'g', 'c')
    local version, created = 1, now
    if old[1] then
      version, created = tonumber(old[1]) + 1, old[4]
    else
      redis.call('ZADD', kidx(kind), 0, id)
    end
    if old[2] ~= status then
      if old[2] then redis.call('ZREM', sidx(kind, old[2]), id) end
      if status then redis.call('ZADD', sidx(kind, status), 0, id) else redis.call('HDEL', key, 's') end
    end
    if old[3] ~= group then
      if old[3] then redis.call('ZREM', gidx(kind, old[3]), id) end
      if group then redis.call('ZADD', gidx(kind, group), 0, id) else redis.call('HDEL', key, 'g') end
    end
    redis.call('HSET', key, 'v', version, 'c', created, 'u', now, 'd', ARGV[at + 6])
    if status then redis.call('HSET', key, 's', status) end
    if group then redis.call('HSET', key, 'g', group) end
    r = {version, created}
  elseif code == 'E' then
    local q, id, np, due, owner = ARGV[at + 1], ARGV[at + 2], ARGV[at + 4], ARGV[at + 5], ARGV[at + 6]
    local ik = ikey(q, id)
    if redis.call('EXISTS', ik) == 1 then
      r = 0
    else
      local seq = redis.call('INCR', P .. 'seq')
      if owner ~= '' then
        local token = redis.call('INCR', P .. 'fence')
        local lease_due = ARGV[at + 7]
        redis.call('HSET', ik, 'p', ARGV[at + 3], 'np', np, 'sq', seq, 'e', now, 'd', lease_due,
          'l', '1', 't', token, 'o', owner, 'a', 1)
        redis.call('ZADD', lq(q), lease_due, id)
        r = token
      else
        redis.call('HSET', ik, 'p', ARGV[at + 3], 'np', np, 'sq', seq, 'e', now, 'd', due,
          'l', '0', 't', 0, 'o', '', 'a', 0)
        if tonumber(due) <= nnow then
          redis.call('ZADD', rq(q), np, member(seq, id))
        else
          redis.call('ZADD', dq(q), due, id)
        end
        r = 1
      end
    end
    if owner == '' then woken[q] = true end
  elseif code == 'W' then
    named[ARGV[at + 1]] = true
    r = 0
  elseif code == 'Q' or code == 'A' then
    local q, id = ARGV[at + 1], ARGV[at + 2]
    local ik = ikey(q, id)
    local it = redis.call('HMGET', ik, 'np', 'sq')
    if it[1] then
      redis.call('DEL', ik)
      redis.call('ZREM', rq(q), member(it[2], id))
      redis.call('ZREM', dq(q), id)
      redis.call('ZREM', lq(q), id)
      r = 1
    else
      r = 0
    end
  else -- D
    local kind, id = ARGV[at + 1], ARGV[at + 2]
    local key = rkey(kind, id)
    local old = redis.call('HMGET', key, 'v', 's', 'g')
    if old[1] then
      redis.call('DEL', key)
      redis.call('ZREM', kidx(kind), id)
      if old[2] then redis.call('ZREM', sidx(kind, old[2]), id) end
      if old[3] then redis.call('ZREM', gidx(kind, old[3]), id) end
      r = 1
    else
      r = 0
    end
  end
  out[n + 1] = r
end
for q in pairs(woken) do wake(ARGV[3], q) end
for name in pairs(named) do wake_name(ARGV[3], name) end
return out
"""
)

TAKE = (
    _PRELUDE
    + """
-- ARGV: P, now, owner, lease due, limit, tag, fetch kind, group kind, queues...
--   -> flat: queue id payload -priority attempts token enqueued, then with a fetch kind (not '') v s g c u d
--   of the record of that kind whose id is the item's up to its last ':', and with a group kind v s g c u d
--   of the record of that kind whose id is the first one's group (v false for a missing record)
-- A take that finds nothing leaves the caller's tag in each queue's waiting set (P qw:<queue>): the next
-- enqueue or nack there wakes it.
local owner, due, limit, tag = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local fkind, gkind = ARGV[7], ARGV[8]
local function fetch(out, kind, id)
  local r = {false, false, false, false, false, false}
  if id then r = redis.call('HMGET', rkey(kind, id), 'v', 's', 'g', 'c', 'u', 'd') end
  for j = 1, 6 do out[#out + 1] = r[j] end
  return r[3]
end
local cands = {}
for n = 9, #ARGV do
  local q = ARGV[n]
  promote(q)
  local r = redis.call('ZRANGE', rq(q), 0, limit - 1, 'WITHSCORES')
  for j = 1, #r, 2 do cands[#cands + 1] = {tonumber(r[j + 1]), r[j], q} end
end
if #ARGV > 9 then
  table.sort(cands, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
end
local out = {}
for n = 1, math.min(limit, #cands) do
  local m, q = cands[n][2], cands[n][3]
  local id = string.sub(m, 17)
  local ik = ikey(q, id)
  redis.call('ZREM', rq(q), m)
  local token = redis.call('INCR', P .. 'fence')
  local attempts = redis.call('HINCRBY', ik, 'a', 1)
  redis.call('HSET', ik, 'l', '1', 't', token, 'o', owner, 'd', due)
  redis.call('ZADD', lq(q), due, id)
  local it = redis.call('HMGET', ik, 'p', 'np', 'e')
  for _, v in ipairs({q, id, it[1], it[2], attempts, token, it[3]}) do out[#out + 1] = v end
  if fkind ~= '' then
    local rid = string.match(id, '^(.*):[^:]*$')
    if rid == nil or rid == '' then rid = id end
    local g = fetch(out, fkind, rid)
    if gkind ~= '' then fetch(out, gkind, g or nil) end
  end
end
if #out == 0 then
  for n = 9, #ARGV do redis.call('SADD', P .. 'qw:' .. ARGV[n], tag) end
end
return out
"""
)

WOKEN = (
    _PRELUDE
    + """
-- ARGV: P, now, names... -> for each, 1 if a Wake op of that name came in the last WAKE_KEEP_S seconds, else 0
local out = {}
for n = 3, #ARGV do
  local at = redis.call('ZSCORE', P .. 'wk', ARGV[n])
  out[#out + 1] = (at and tonumber(at) >= nnow - """
    + str(WAKE_KEEP_S)
    + """) and 1 or 0
end
return out
"""
)

GET_MANY = (
    _PRELUDE
    + """
-- ARGV: P, now, then kind id pairs -> flat: v s g c u d of each record (v false for a missing one)
local out = {}
for n = 3, #ARGV, 2 do
  local r = redis.call('HMGET', rkey(ARGV[n], ARGV[n + 1]), 'v', 's', 'g', 'c', 'u', 'd')
  for j = 1, 6 do out[#out + 1] = r[j] end
end
return out
"""
)

NEXT_DUE = (
    _PRELUDE
    + """
-- ARGV: P, now, queues... -> the earliest due time of a delayed item or a lease (text), or nil
local best, text = nil, false
for n = 3, #ARGV do
  for _, key in ipairs({dq(ARGV[n]), lq(ARGV[n])}) do
    local r = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if #r > 0 and (best == nil or tonumber(r[2]) < best) then best, text = tonumber(r[2]), r[2] end
  end
end
return text
"""
)

EXTEND = (
    _PRELUDE
    + """
-- ARGV: P, now, queue, id, token, new due -> 1, or 0 when the lease is lost
local q, id = ARGV[3], ARGV[4]
if not held(q, id, ARGV[5]) then return 0 end
redis.call('HSET', ikey(q, id), 'd', ARGV[6])
redis.call('ZADD', lq(q), ARGV[6], id)
return 1
"""
)

NACK = (
    _PRELUDE
    + """
-- ARGV: P, now, queue, id, token, due, tag -> 1, or 0 when the lease is lost
local q, id, due = ARGV[3], ARGV[4], ARGV[6]
if not held(q, id, ARGV[5]) then return 0 end
local ik = ikey(q, id)
redis.call('HSET', ik, 'l', '0', 'o', '', 'd', due)
redis.call('ZREM', lq(q), id)
if tonumber(due) <= nnow then
  local it = redis.call('HMGET', ik, 'np', 'sq')
  redis.call('ZADD', rq(q), it[1], member(it[2], id))
else
  redis.call('ZADD', dq(q), due, id)
end
wake(ARGV[7], q)
return 1
"""
)

DEPTH = (
    _PRELUDE
    + """
-- ARGV: P, now, queue -> {ready, delayed, leased}
local q = ARGV[3]
local due = redis.call('ZCOUNT', dq(q), '-inf', now) + redis.call('ZCOUNT', lq(q), '-inf', now)
return {redis.call('ZCARD', rq(q)) + due, redis.call('ZCOUNT', dq(q), '(' .. now, '+inf'),
  redis.call('ZCOUNT', lq(q), '(' .. now, '+inf')}
"""
)

ACQUIRE = (
    _PRELUDE
    + """
-- ARGV: P, now, name, owner, expires at -> the new fencing token, or nil when another owner holds it
local key = P .. 'l:' .. ARGV[3]
local h = redis.call('HMGET', key, 'o', 'x')
if h[1] and h[1] ~= ARGV[4] and tonumber(h[2]) > nnow then return false end
local token = redis.call('INCR', P .. 'fence')
redis.call('HSET', key, 'o', ARGV[4], 't', token, 'x', ARGV[5])
return token
"""
)

REFRESH = (
    _PRELUDE
    + """
-- ARGV: P, now, name, owner, token, expires at -> 1, or 0 when the lock is lost
local key = P .. 'l:' .. ARGV[3]
local h = redis.call('HMGET', key, 'o', 't', 'x')
if h[1] ~= ARGV[4] or h[2] ~= ARGV[5] or not (tonumber(h[3]) > nnow) then return 0 end
redis.call('HSET', key, 'x', ARGV[6])
return 1
"""
)

RELEASE = (
    _PRELUDE
    + """
-- ARGV: P, now, name, owner, token -> 1, or 0 when the lock was not ours
local key = P .. 'l:' .. ARGV[3]
local h = redis.call('HMGET', key, 'o', 't')
if h[1] ~= ARGV[4] or h[2] ~= ARGV[5] then return 0 end
redis.call('DEL', key)
return 1
"""
)

_WALK = """
-- The ids of a lexical zset after `after` (exclusive; '' for none), in order, that pass `keep`, at most `want`.
local function walk(key, after, desc, want, keep)
  local out = {}
  local lo, hi = '-', '+'
  if after ~= '' then if desc then hi = '(' .. after else lo = '(' .. after end end
  while #out < want do
    local batch
    if desc then
      batch = redis.call('ZREVRANGEBYLEX', key, hi, lo, 'LIMIT', 0, 200)
    else
      batch = redis.call('ZRANGEBYLEX', key, lo, hi, 'LIMIT', 0, 200)
    end
    for _, id in ipairs(batch) do
      if keep == nil or keep(id) then
        out[#out + 1] = id
        if #out >= want then break end
      end
    end
    if #batch < 200 then break end
    if desc then hi = '(' .. batch[#batch] else lo = '(' .. batch[#batch] end
  end
  return out
end
"""

LIST = (
    _PRELUDE
    + _WALK
    + """
-- ARGV: P, now, kind, group, after, limit, desc, statuses... -> flat: id version status group created updated data
local kind, group, after, limit, desc = ARGV[3], unopt(ARGV[4]), ARGV[5], tonumber(ARGV[6]), ARGV[7] == '1'
local statuses = {}
for n = 8, #ARGV do statuses[ARGV[n]] = true end
local ids
if group then
  local keep = nil
  if #ARGV >= 8 then
    keep = function(id)
      local s = redis.call('HGET', rkey(kind, id), 's')
      return s and statuses[s] or false
    end
  end
  ids = walk(gidx(kind, group), after, desc, limit, keep)
elseif #ARGV >= 8 then
  ids = {}
  for s in pairs(statuses) do
    for _, id in ipairs(walk(sidx(kind, s), after, desc, limit, nil)) do ids[#ids + 1] = id end
  end
  if desc then table.sort(ids, function(a, b) return a > b end) else table.sort(ids) end
else
  ids = walk(kidx(kind), after, desc, limit, nil)
end
local out = {}
for n = 1, math.min(limit, #ids) do
  local id = ids[n]
  local r = redis.call('HMGET', rkey(kind, id), 'v', 's', 'g', 'c', 'u', 'd')
  for _, v in ipairs({id, r[1], opt(r[2]), opt(r[3]), r[4], r[5], r[6]}) do out[#out + 1] = v end
end
return out
"""
)

COUNT = (
    _PRELUDE
    + _WALK
    + """
-- ARGV: P, now, kind, group, statuses... -> how many records match
local kind, group = ARGV[3], unopt(ARGV[4])
if group then
  if #ARGV < 5 then return redis.call('ZCARD', gidx(kind, group)) end
  local statuses = {}
  for n = 5, #ARGV do statuses[ARGV[n]] = true end
  local n = 0
  for _, id in ipairs(redis.call('ZRANGE', gidx(kind, group), 0, -1)) do
    local s = redis.call('HGET', rkey(kind, id), 's')
    if s and statuses[s] then n = n + 1 end
  end
  return n
end
if #ARGV < 5 then return redis.call('ZCARD', kidx(kind)) end
local n, seen = 0, {}
for i = 5, #ARGV do
  if not seen[ARGV[i]] then
    seen[ARGV[i]] = true
    n = n + redis.call('ZCARD', sidx(kind, ARGV[i]))
  end
end
return n
"""
)

HISTORY = (
    _PRELUDE
    + """
-- ARGV: P, now, subject, event, status, since, until, after_seq, limit (optional strings as '' / '=v')
-- -> flat: seq subject event status ts data, in seq order. Walks the most selective index.
local subject, event, status = unopt(ARGV[3]), unopt(ARGV[4]), unopt(ARGV[5])
local since, till = unopt(ARGV[6]), unopt(ARGV[7])
local after, limit = tonumber(ARGV[8]), tonumber(ARGV[9])
since, till = since and tonumber(since), till and tonumber(till)
local out, count = {}, 0
local function take(seq, f)
  local e = {}
  for j = 1, #f, 2 do e[f[j]] = f[j + 1] end
  if (subject and e.j ~= subject) or (event and e.e ~= event) or (status and e.s ~= status) then return end
  local ts = tonumber(e.t)
  if (since and ts < since) or (till and ts >= till) then return end
  for _, v in ipairs({seq, e.j, e.e, opt(e.s), e.t, e.d}) do out[#out + 1] = v end
  count = count + 1
end
local index = nil
if subject then index = P .. 'hs:' .. subject
elseif event then index = P .. 'he:' .. event
elseif status then index = P .. 'ht:' .. status end
while count < limit do
  if index then
    local seqs = redis.call('ZRANGEBYSCORE', index, '(' .. after, '+inf', 'LIMIT', 0, 200)
    for _, seq in ipairs(seqs) do
      local r = redis.call('XRANGE', P .. 'h', seq .. '-0', seq .. '-0')
      if #r > 0 then take(seq, r[1][2]) end
      if count >= limit then break end
    end
    if #seqs < 200 then break end
    after = tonumber(seqs[#seqs])
  else
    local r = redis.call('XRANGE', P .. 'h', '(' .. after .. '-0', '+', 'COUNT', 200)
    for _, entry in ipairs(r) do
      take(string.sub(entry[1], 1, -3), entry[2])
      if count >= limit then break end
    end
    if #r < 200 then break end
    after = tonumber(string.sub(r[#r][1], 1, -3))
  end
end
return out
"""
)
