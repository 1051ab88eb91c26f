-- Commits the writes of one or more aggregates. Each write is applied
-- atomically: the new state together with the dedupe marks of the events
-- applied, only if the stored version is still the expected one and none of
-- the marks exist. On Redis Cluster a call carries the aggregates of one
-- hash slot (each aggregate's keys share its hash tag); on a single server
-- or Sentinel one call carries any, to spare a script call per aggregate.
--
-- KEYS        per aggregate: its state hash (fields v = version, d = data),
--             then the seen keys of the events applied to it
-- ARGV[1]     mark TTL in milliseconds
-- ARGV[2..]   per aggregate, four values: the number of seen keys; the
--             expected version (decimal; absent state is version 0); the new
--             version, expected + 1 (computed by the caller so that no
--             version passes through a Lua double); the new data
--
-- Returns one code per aggregate: 1 committed, 2 version conflict, 3 mark
-- conflict (state.Outcome).
local ttl = ARGV[1]
-- Read once: otherwise each command looks up the global redis and its field.
local call = redis.call

local function commit(state, first, last, expect, new, data)
  local v = call('HGET', state, 'v') or '0'
  if v ~= expect then
    -- The same write already applied (a retry after a lost reply) is a success.
    if v == new and call('HGET', state, 'd') == data then
      for i = first, last do
        if call('EXISTS', KEYS[i]) == 0 then return 2 end
      end
      -- Write the same values again: WAIT is documented to count the writes
      -- of its own connection, and the first attempt's may have been
      -- another. (Redis 7.0 makes a fresh connection's WAIT wait for the
      -- master's whole stream anyway.)
      call('HSET', state, 'v', new, 'd', data)
      return 1
    end
    return 2
  end
  -- Set the marks NX; one that exists means that event was applied: undo the
  -- marks set so far (the script is atomic, so nobody saw them) and refuse.
  for i = first, last do
    if not call('SET', KEYS[i], '1', 'PX', ttl, 'NX') then
      for j = first, i - 1 do call('DEL', KEYS[j]) end
      return 3
    end
  end
  call('HSET', state, 'v', new, 'd', data)
  return 1
end

local out, k, o = {}, 1, 0
for a = 2, #ARGV, 4 do
  local n = tonumber(ARGV[a])
  o = o + 1
  out[o] = commit(KEYS[k], k + 1, k + n, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
  k = k + 1 + n
end
return out
