-- Complete a referral: POST /v1/referrals/{id}/complete for referrals in treatment, each once
-- (the ids are dealt out between threads). A thread that has used up its share stops (see
-- `use_up` in common.lua): the rate is then taken over the time until the last thread ran out,
-- not over the whole run, and the latencies are those of completions only.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local ids = lines("complete.txt")
local today = os.getenv("BENCH_TODAY")
local nthreads = tonumber(os.getenv("BENCH_THREADS"))
local i = 0
request = function()
  local k = i * nthreads + tid()
  i = i + 1
  if k > #ids then
    return use_up()
  end
  mark_start()
  return wrk.format("POST", "/v1/referrals/" .. ids[k] .. "/complete", staff, '{"completed_on":"' .. today .. '"}')
end
