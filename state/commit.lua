-- Commits one aggregate's write: new state and the dedupe marks of the
-- events applied, atomically, only if the stored version is still the
-- expected one and none of the marks exist.
--
-- KEYS[1]     the state hash (fields v = version, d = data)
-- KEYS[2..n]  the seen keys of the events applied
-- ARGV[1]     expected version (decimal; absent state is version 0)
-- ARGV[2]     new version, ARGV[1] + 1 (decimal, computed by the caller so
--             that no version passes through a Lua double)
-- ARGV[3]     new data
-- ARGV[4]     mark TTL in milliseconds
--
-- Returns 1 committed, 2 version conflict, 3 mark conflict (state.Outcome).
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if v ~= ARGV[1] then
  -- The same write already applied (a retry after a lost reply) is a success.
  if v == ARGV[2] and redis.call('HGET', KEYS[1], 'd') == ARGV[3] then
    for i = 2, #KEYS do
      if redis.call('EXISTS', KEYS[i]) == 0 then return 2 end
    end
    return 1
  end
  return 2
end
-- Set the marks NX; one that exists means that event was applied: undo the
-- marks set so far (the script is atomic, so nobody saw them) and refuse.
for i = 2, #KEYS do
  if not redis.call('SET', KEYS[i], '1', 'PX', ARGV[4], 'NX') then
    for j = 2, i - 1 do redis.call('DEL', KEYS[j]) end
    return 3
  end
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
return 1
