#!/usr/bin/env python3
"""Drives burnlink's MCP server with the official Python MCP SDK (1.x), a client we did not write.

Usage:
  mcp_client.py http URL BEARER_TOKEN   < calls.json
  mcp_client.py stdio BURNLINK_BINARY   < calls.json   (starts `BURNLINK_BINARY mcp`, env inherited)

calls.json is a list of {"tool": NAME, "args": {...}}. Prints one JSON object on stdout:
{"protocol": VERSION, "tools": [{name, description, inputSchema, outputSchema}],
 "results": [{"isError", "structured", "text": [...], "links": [{uri, name, size}], "exception"?}]}
The SDK itself checks each structured result against the tool's output schema; a mismatch
shows up as "exception".
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def drive(session: ClientSession, calls):
    init = await session.initialize()
    tools = await session.list_tools()
    out = {
        "protocol": str(init.protocolVersion),
        "tools": [
            {
                "name": t.name,
                "description": t.description,
                "inputSchema": t.inputSchema,
                "outputSchema": t.outputSchema,
            }
            for t in tools.tools
        ],
        "results": [],
    }
    for call in calls:
        entry = {}
        try:
            r = await session.call_tool(call["tool"], call.get("args", {}))
            entry["isError"] = bool(r.isError)
            entry["structured"] = r.structuredContent
            entry["text"] = [c.text for c in r.content if c.type == "text"]
            entry["links"] = [
                {"uri": str(c.uri), "name": c.name, "size": c.size}
                for c in r.content
                if c.type == "resource_link"
            ]
        except Exception as e:  # reported, not raised: the test decides
            entry["exception"] = f"{type(e).__name__}: {e}"
        out["results"].append(entry)
    return out


async def over_http(url, token, calls):
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with client:
        async with streamable_http_client(url, http_client=client) as (read, write, _):
            async with ClientSession(read, write) as session:
                return await drive(session, calls)


async def over_stdio(binary, calls):
    params = StdioServerParameters(command=binary, args=["mcp"], env=dict(os.environ))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            return await drive(session, calls)


def main():
    calls = json.load(sys.stdin)
    mode = sys.argv[1]
    if mode == "http":
        run = over_http(sys.argv[2], sys.argv[3], calls)
    elif mode == "stdio":
        run = over_stdio(sys.argv[2], calls)
    else:
        sys.exit(f"unknown mode {mode}")
    out = asyncio.run(asyncio.wait_for(run, timeout=60))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
