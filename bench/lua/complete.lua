-- Complete a referral: POST /v1/referrals/{id}/complete for referrals in treatment, each once
-- (the ids are dealt out between threads). Should a thread use up its share, it sends /healthz
-- instead and those requests are left out of the count (wrk cannot stop one connection).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local ids = lines("complete.txt")
local today = os.getenv("BENCH_TODAY")
local nthreads = tonumber(os.getenv("BENCH_THREADS"))
local i = 0
spare = 0
request = function()
  local k = i * nthreads + tid()
  i = i + 1
  if k > #ids then
    spare = spare + 1
    return wrk.format("GET", "/healthz")
  end
  return wrk.format("POST", "/v1/referrals/" .. ids[k] .. "/complete", staff, '{"completed_on":"' .. today .. '"}')
end
