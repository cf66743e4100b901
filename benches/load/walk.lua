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
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  reqs, counter, ran_out = {}, 1, 0
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == id then
      reqs[#reqs + 1] = wrk.format("GET", line)
    end
    i = i + 1
  end
  -- What reading the file left behind, collected now rather than during the run.
  collectgarbage()
end

function request()
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
