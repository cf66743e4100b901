-- wrk script: MCP tools/call create_download_link over streamable HTTP (stateless JSON mode),
-- one fresh link per request. Every answer is checked for "isError":false.
-- Usage: wrk ... -s mcp_call.lua URL/mcp -- API_TOKEN PATH
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  failed = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
  wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_download_link",'
    .. '"arguments":{"path":"' .. args[2] .. '"}}}'
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"isError":false', 1, true) then
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("failed")
  end
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f failed=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, bad, summary.requests))
end
