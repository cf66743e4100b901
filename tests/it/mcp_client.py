#!/usr/bin/env python3
"""Drives burnlink's MCP server with the official Python MCP SDK (1.x), a client we did not write.

Usage:
  mcp_client.py http URL BEARER_TOKEN   < calls.json
  mcp_client.py stdio BURNLINK_BINARY   < calls.json   (starts `BURNLINK_BINARY mcp`, env inherited)
  mcp_client.py oauth URL ISSUER CLIENT_ID CLIENT_SECRET [SCOPES]   < calls.json
      (the SDK's own OAuth client: it finds the authorization server from the server's 401 and
      its protected-resource metadata and gets a token with the client credentials grant)

calls.json is a list of {"tool": NAME, "args": {...}}. Prints one JSON object on stdout:
{"protocol": VERSION, "tools": [{name, title, description, inputSchema, outputSchema, annotations}],
 "results": [{"isError", "structured", "text": [...], "links": [{uri, name, size, mimeType}],
              "schemaErrors": [...], "exception"?}]}
The SDK itself checks each structured result against the tool's output schema (a mismatch
shows up as "exception"); this script checks it again with the `jsonschema` validator and
lists every violation in "schemaErrors".
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

try:
    import jsonschema
except ImportError:  # the SDK depends on it; stay usable without it all the same
    jsonschema = None


def schema_errors(schema, value):
    if schema is None or value is None:
        return []
    if jsonschema is None:
        return ["jsonschema is not installed"]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in cls(schema).iter_errors(value)]


async def drive(session: ClientSession, calls):
    init = await session.initialize()
    tools = await session.list_tools()
    out = {
        "protocol": str(init.protocolVersion),
        "tools": [
            {
                "name": t.name,
                "title": t.title,
                "description": t.description,
                "inputSchema": t.inputSchema,
                "outputSchema": t.outputSchema,
                "annotations": t.annotations.model_dump(exclude_none=True) if t.annotations else None,
            }
            for t in tools.tools
        ],
        "results": [],
    }
    schemas = {t.name: t.outputSchema for t in tools.tools}
    for call in calls:
        entry = {}
        try:
            r = await session.call_tool(call["tool"], call.get("args", {}))
            entry["isError"] = bool(r.isError)
            entry["structured"] = r.structuredContent
            entry["text"] = [c.text for c in r.content if c.type == "text"]
            entry["links"] = [
                {"uri": str(c.uri), "name": c.name, "size": c.size, "mimeType": c.mimeType}
                for c in r.content
                if c.type == "resource_link"
            ]
            entry["schemaErrors"] = schema_errors(schemas.get(call["tool"]), r.structuredContent)
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


class MemoryStorage:
    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


async def over_oauth(url, issuer, client_id, secret, scopes, calls):
    from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider

    auth = ClientCredentialsOAuthProvider(
        server_url=url,
        storage=MemoryStorage(),
        client_id=client_id,
        client_secret=secret,
        scopes=scopes,
        issuer=issuer,
    )
    client = create_mcp_http_client(auth=auth)
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
    elif mode == "oauth":
        scopes = sys.argv[6] if len(sys.argv) > 6 else None
        run = over_oauth(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], scopes, calls)
    elif mode == "stdio":
        run = over_stdio(sys.argv[2], calls)
    else:
        sys.exit(f"unknown mode {mode}")
    out = asyncio.run(asyncio.wait_for(run, timeout=60))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
