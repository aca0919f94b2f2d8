-- Mixed traffic: 10% writes (record a referral), 90% reads spread over ambassador detail,
-- /v1/me/referrals, public code lookup and the /r/{code} page.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local codes = lines("codes.txt")
local details = lines("paths-detail.txt")
request = function()
  local r = math.random(100)
  if r <= 10 then return record_request(codes) end
  local kind = r % 4
  if kind == 0 then return wrk.format("GET", details[math.random(#details)], staff) end
  if kind == 1 then return wrk.format("GET", "/v1/me/referrals", member) end
  local code = codes[math.random(#codes)]
  if kind == 2 then return wrk.format("GET", "/v1/public/codes/" .. code) end
  return wrk.format("GET", "/r/" .. code)
end
