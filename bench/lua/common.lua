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
  local errors, sample, spare = 0, "", 0
  for _, t in ipairs(threads) do
    spare = spare + (t:get("spare") or 0)
    errors = errors + (t:get("bad") or 0)
    local f = t:get("first_bad") or ""
    if sample == "" then sample = f end
  end
  local e = summary.errors
  errors = errors + e.connect + e.read + e.write + e.timeout
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
    math.max(0, summary.requests - spare), summary.duration, latency:percentile(50), latency:percentile(99), errors))
  if spare > 0 then io.write("BENCH_SAMPLE fixture pool used up: " .. spare .. " filler requests not counted\n") end
  if sample ~= "" then io.write("BENCH_SAMPLE " .. string.gsub(sample, "\n", " ") .. "\n") end
end

function init(args)
  math.randomseed(os.time() * 100 + tid())
end
