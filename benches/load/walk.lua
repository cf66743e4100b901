-- wrk script: every request uses the next URL from a file, so each one-time link is used once.
-- Usage: wrk ... -s walk.lua URL -- URLS_FILE THREADS
-- Each thread takes every THREADS-th line. A thread that runs out of URLs re-sends its last
-- one (a 404 on burnlink); such requests are counted, and every answer of 400 or more is
-- counted by wrk itself, so a run that ran out or was refused is visible rather than
-- flattering.
--
-- The client must cost the same for any server and never pause: it shares the two cores with
-- the server it measures. So every request is built once, before the run (wrk.format), and
-- `request` only hands over the next one; and the script has no `response` function, for
-- which wrk would build a Lua table of each response's headers and a string of its body. Both
-- made garbage on every request, and with it LuaJIT's collector paused wrk's threads for up
-- to 75 ms at a time; the per-response work also grew with the number of headers a server
-- sends, and capped nginx at about 100,000 requests/s (docs/benchmarks.md, "The sixth
-- performance pass").
--
-- No thread sends before every thread is ready. wrk runs each thread's `init` on its main
-- thread just before starting that thread, and starts its clock only after the last one: so
-- the first thread would send while the second reads its URLs (seconds, for a file of a few
-- million lines), and those requests would count without their time. That made a server's
-- rate depend on the size of its URL file; nginx's was three times burnlink's, which put
-- about a quarter on nginx's rate (docs/benchmarks.md, "The seventh performance pass"). The
-- last thread's `init` creates a gate file, and each thread's first request waits for it, so
-- the wait falls before wrk's clock starts.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  gate = file .. ".go"
  if id == 0 then
    os.remove(gate)
  end
  reqs, counter, ran_out, waited = {}, 1, 0, false
  -- wrk calls the first thread's `request` once on its main thread, right after this `init`,
  -- to see whether it pipelines: that call must not wait for the gate.
  verifying = id == 0
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == id then
      reqs[#reqs + 1] = wrk.format("GET", line)
    end
    i = i + 1
  end
  -- What reading the file left behind, collected now rather than during the run.
  collectgarbage()
  if id == nthreads - 1 then
    assert(io.open(gate, "w")):close()
  end
end

-- Blocks this thread until the gate file exists: 60 s at most, checked every 10 ms.
local function wait_for_gate()
  for _ = 1, 6000 do
    local f = io.open(gate)
    if f then
      f:close()
      return
    end
    os.execute("sleep 0.01")
  end
  error("walk.lua: no gate file " .. gate .. " after 60 s (is THREADS wrk's -t?)")
end

function request()
  if verifying then
    verifying = false
  elseif not waited then
    wait_for_gate()
    waited = true
  end
  local r = reqs[counter]
  if r == nil then
    ran_out = ran_out + 1
    return reqs[#reqs]
  end
  counter = counter + 1
  return r
end

function done(summary, latency, requests)
  local r = 0
  for _, t in ipairs(threads) do
    r = r + t:get("ran_out")
  end
  io.write(string.format(
    "RESULT rps=%.1f p99_ms=%.3f refused=%d ran_out=%d requests=%d p50_ms=%.3f p999_ms=%.3f max_ms=%.3f\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000,
    summary.errors.status, r, summary.requests, latency:percentile(50) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
