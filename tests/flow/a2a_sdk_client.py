"""Runs in a venv holding only the official ``a2a-sdk`` (1.3.0): discover the agent at ``argv[1]`` through its
agent card and call it over JSON-RPC; prints one JSON line per step (for tests/flow/test_a2a_remote.py)."""

import asyncio
import json
import sys

import httpx
from a2a.client import A2ACardResolver
from a2a.client.transports.jsonrpc import JsonRpcTransport
from a2a.types import a2a_pb2
from google.protobuf import json_format, struct_pb2


async def main(url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        card = await A2ACardResolver(http, url).get_agent_card()
        interface = card.supported_interfaces[0]
        print(
            json.dumps(
                {
                    "card": card.name,
                    "skills": [s.id for s in card.skills],
                    "binding": interface.protocol_binding,
                }
            )
        )
        transport = JsonRpcTransport(http, card, interface.url)
        data = struct_pb2.Value()
        data.struct_value.update({"colony": "ross"})
        message = a2a_pb2.Message(message_id="m-1", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(data=data)])
        reply = await transport.send_message(a2a_pb2.SendMessageRequest(message=message))
        print(json.dumps(json_format.MessageToDict(reply)))
        bad = a2a_pb2.Message(
            message_id="m-2", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="no colony")]
        )
        try:
            await transport.send_message(a2a_pb2.SendMessageRequest(message=bad))
        except Exception as exc:  # the SDK maps the JSON-RPC error to its own exception
            print(json.dumps({"error": type(exc).__name__, "text": str(exc)}))


asyncio.run(main(sys.argv[1]))
