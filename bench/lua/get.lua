-- GET a random path from the fixture file named by BENCH_PATHS, as BENCH_AS (staff | member |
-- console | public).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local paths = lines(os.getenv("BENCH_PATHS"))
local as = os.getenv("BENCH_AS")
local headers = (as == "staff" and staff) or (as == "member" and member) or (as == "console" and console) or {}
request = function() return wrk.format("GET", paths[math.random(#paths)], headers) end
