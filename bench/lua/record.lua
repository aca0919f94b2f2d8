-- Record a referral: POST /v1/referrals (staff key) with a new client each time.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local codes = lines("codes.txt")
request = function() return record_request(codes) end
