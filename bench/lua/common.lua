-- Shared by the wrk scenario scripts (each wrk thread loads its own copy).
-- Settings come from the environment bench/run exports: BENCH_FIXTURES (seed fixtures),
-- BENCH_STAFF_KEY, BENCH_SESSION (portal), BENCH_CONSOLE (console session), BENCH_NONCE
-- (unique per scenario run).

threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_no", counter)
  table.insert(threads, thread)
end

function lines(name)
  local t = {}
  for l in io.lines(os.getenv("BENCH_FIXTURES") .. "/" .. name) do
    if l ~= "" then t[#t + 1] = l end
  end
  return t
end

function tid() return thread_no end

staff = { ["Authorization"] = "Bearer " .. (os.getenv("BENCH_STAFF_KEY") or ""), ["Content-Type"] = "application/json" }
member = { ["Authorization"] = "Bearer " .. (os.getenv("BENCH_SESSION") or "") }
console = { ["Cookie"] = "vouch_console=" .. (os.getenv("BENCH_CONSOLE") or "") }

-- A new client for POST /v1/referrals: unique e-mail and idempotency key per request.
local n = 0
function record_request(codes)
  n = n + 1
  local who = string.format("%s-%d-%d", os.getenv("BENCH_NONCE"), tid(), n)
  local body = string.format(
    '{"code":"%s","first_name":"Load","last_name":"T%d","email":"%s@load.example","share_name_with_ambassador":true}',
    codes[math.random(#codes)], n, who)
  local h = { ["Authorization"] = staff["Authorization"], ["Content-Type"] = "application/json", ["Idempotency-Key"] = who }
  return wrk.format("POST", "/v1/referrals", h, body)
end

-- A monotonic clock in microseconds (wrk's LuaJIT has no other with sub-second resolution).
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local timespec = ffi.new("bench_timespec")
function now_us()
  ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
  return tonumber(timespec.tv_sec) * 1e6 + tonumber(timespec.tv_nsec) / 1e3
end

-- For scripts with a pool of fixtures each used once (complete.lua): `mark_start()` before
-- each real request, `use_up()` as the request once the thread's share is used up. That stops
-- the thread (wrk cannot stop one connection, but can stop a thread's event loop); its
-- requests still in flight are dropped, not counted. `done` then reports the rate over the
-- time from the first request to the moment the last thread ran out, rather than over the
-- whole run, so a fast machine that empties the pool early is not reported as a slow one.
function mark_start()
  if not started_us then started_us = now_us() end
end
function use_up()
  if not ran_out_us then
    ran_out_us = now_us()
    wrk.thread:stop()
  end
  return wrk.format("GET", "/healthz") -- never sent: the loop stops first
end

-- Non-2xx answers, counted per thread (wrk itself counts only >= 400).
bad = 0
first_bad = ""
function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
    if first_bad == "" then first_bad = status .. " " .. string.sub(body or "", 1, 200) end
  end
end

function done(summary, latency, requests)
  local errors, sample = 0, ""
  local first, last, all_ran_out = nil, nil, #threads > 0
  for _, t in ipairs(threads) do
    local s, r = t:get("started_us"), t:get("ran_out_us")
    if s and (not first or s < first) then first = s end
    if r then
      if not last or r > last then last = r end
    else
      all_ran_out = false
    end
    errors = errors + (t:get("bad") or 0)
    local f = t:get("first_bad") or ""
    if sample == "" then sample = f end
  end
  local e = summary.errors
  errors = errors + e.connect + e.read + e.write + e.timeout
  local duration = summary.duration
  if all_ran_out and first and last > first then
    duration = last - first
    io.write(string.format("BENCH_SAMPLE fixture pool used up after %.1f s of the %.1f s run: rate over that time\n",
      duration / 1e6, summary.duration / 1e6))
  end
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, duration, latency:percentile(50), latency:percentile(99), errors))
  if sample ~= "" then io.write("BENCH_SAMPLE " .. string.gsub(sample, "\n", " ") .. "\n") end
end

function init(args)
  math.randomseed(os.time() * 100 + tid())
end
