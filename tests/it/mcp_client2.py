#!/usr/bin/env python3
"""Drives burnlink's /mcp with the official Python MCP SDK 2.x `Client` (a second venv, installed
by scripts/test), with a bearer token (a static API token or an OAuth access token).

Usage: mcp_client2.py MODE URL BEARER_TOKEN < calls.json
  MODE: `2026-07-28` (stateless revision), `auto` or `legacy` (handshake, up to 2025-11-25)

Prints the same report as mcp_client.py: {"protocol", "tools", "results"}, each structured
result checked against its tool's output schema with `jsonschema` ("schemaErrors").
"""

import asyncio
import json
import sys

import jsonschema
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def schema_errors(schema, value):
    if schema is None or value is None:
        return []
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in cls(schema).iter_errors(value)]


async def run(mode, url, token, calls):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode) as client:
            tools = await client.list_tools()
            out = {
                "protocol": str(client.protocol_version),
                "tools": [
                    {
                        "name": t.name,
                        "title": t.title,
                        "outputSchema": t.output_schema if hasattr(t, "output_schema") else t.outputSchema,
                    }
                    for t in tools.tools
                ],
                "results": [],
            }
            schemas = {t["name"]: t["outputSchema"] for t in out["tools"]}
            for call in calls:
                entry = {}
                try:
                    r = await client.call_tool(call["tool"], call.get("args", {}))
                    is_error = getattr(r, "is_error", None)
                    if is_error is None:
                        is_error = getattr(r, "isError", False)
                    structured = getattr(r, "structured_content", None)
                    if structured is None:
                        structured = getattr(r, "structuredContent", None)
                    entry["isError"] = bool(is_error)
                    entry["structured"] = structured
                    entry["text"] = [c.text for c in r.content if c.type == "text"]
                    entry["links"] = [
                        {"uri": str(c.uri), "name": c.name} for c in r.content if c.type == "resource_link"
                    ]
                    entry["schemaErrors"] = schema_errors(schemas.get(call["tool"]), structured)
                except Exception as e:  # reported, not raised: the test decides
                    entry["exception"] = f"{type(e).__name__}: {e}"
                out["results"].append(entry)
            return out


def main():
    calls = json.load(sys.stdin)
    out = asyncio.run(asyncio.wait_for(run(sys.argv[1], sys.argv[2], sys.argv[3], calls), timeout=60))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
