-- KEYS[1]: the user's open-reach hash.
-- ARGV: reach id, entry JSON, rule id, max open runs of the rule (0: no bound), now (unix s),
-- key TTL (s). Returns 1 when registered, 0 when the bound refuses it.
local key, id, entry, rule = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local maxOpen, now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if maxOpen > 0 and redis.call('HEXISTS', key, id) == 0 then
  local open = 0
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local ok, e = pcall(cjson.decode, all[i + 1])
    if not ok or type(e) ~= 'table' or type(e["until"]) ~= 'number' or e["until"] < now then
      redis.call('HDEL', key, all[i])
    elseif e.rule == rule then
      open = open + 1
    end
  end
  if open >= maxOpen then
    return 0
  end
end
redis.call('HSET', key, id, entry)
if redis.call('TTL', key) < ttl then
  redis.call('EXPIRE', key, ttl)
end
return 1
