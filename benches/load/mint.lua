-- wrk script: POST /api/links, one fresh link per request. Counts answers other than 201.
-- Usage: wrk ... -s mint.lua URL -- API_TOKEN PATH
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"path":"' .. args[2] .. '"}'
end

function response(status, headers, body)
  if status ~= 201 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do
    b = b + t:get("bad")
  end
  io.write(string.format("RESULT rps=%.1f p99_ms=%.3f non201=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000, b,
    summary.requests))
end
