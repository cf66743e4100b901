-- wrk script: every request uses the next URL from a file, so each one-time link is used once.
-- Usage: wrk ... -s walk.lua URL -- URLS_FILE THREADS
-- Each thread takes every THREADS-th line. A thread that runs out of URLs re-sends its last
-- one (a 404 on burnlink); such requests and every other non-200 answer are counted and
-- printed, so a run that ran out is visible rather than flattering.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  urls, counter, bad, ran_out, statuses = {}, 1, 0, 0, ""
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == id then
      urls[#urls + 1] = line
    end
    i = i + 1
  end
end

function request()
  local u = urls[counter]
  if u == nil then
    ran_out = ran_out + 1
    u = urls[#urls]
  else
    counter = counter + 1
  end
  return wrk.format("GET", u)
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    if #statuses < 60 then
      statuses = statuses .. status .. " "
    end
  end
end

function done(summary, latency, requests)
  local b, r, seen = 0, 0, ""
  for _, t in ipairs(threads) do
    b = b + t:get("bad")
    r = r + t:get("ran_out")
    seen = seen .. t:get("statuses")
  end
  io.write(string.format("RESULT rps=%.1f p99_ms=%.3f non200=%d ran_out=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000, b, r,
    summary.requests))
  if b > 0 then
    io.write("first non-200 statuses: " .. seen .. "\n")
  end
end
