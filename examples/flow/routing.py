"""Routing: a predicate router, a discriminated-union router, and a runtime routing policy.

Run: python examples/flow/routing.py
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from podium.flow import (
    DictRoutingPolicy,
    Headers,
    Message,
    Node,
    NodePolicy,
    RoutingRequest,
    create,
    predicate_router,
    union_router,
)

NONE = NodePolicy(validate="none")


def handler(name: str) -> Node:
    async def handle(message: Any, _ctx: Any) -> str:
        payload = message.payload if isinstance(message, Message) else message
        return f"{name} <- {payload}"

    return Node(handle, name=name, policy=NONE)


class SearchWeb(BaseModel):
    kind: Literal["web"] = "web"
    query: str


class SearchSql(BaseModel):
    kind: Literal["sql"] = "sql"
    table: str


SearchTask = Annotated[SearchWeb | SearchSql, Field(discriminator="kind")]


async def run() -> list[str]:
    lines: list[str] = []

    # 1. predicate router: choose successors by name from the message
    router = predicate_router("triage", lambda m: "metrics" if "metric" in m.payload else "general")
    flow = create(router.to(handler("metrics"), handler("general")))
    async with flow:
        for text in ("metric usage", "ad spend"):
            await flow.emit(Message(payload=text, headers=Headers(tenant="acme")))
            lines.append(await flow.fetch())

    # 2. union router: each variant of a discriminated union goes to the node named after its kind
    flow = create(union_router("search", SearchTask).to(handler("web"), handler("sql")))
    async with flow:
        await flow.emit(SearchWeb(query="penguins"))
        lines.append(await flow.fetch())
        await flow.emit({"kind": "sql", "table": "colonies"})
        lines.append(await flow.fetch())

    # 3. a routing policy from configuration overrides the predicate per tenant, at runtime
    def by_tenant(request: RoutingRequest) -> str:
        return str(request.message.headers.tenant)

    policy = DictRoutingPolicy({"vip": "premium"}, default="standard", key_getter=by_tenant)
    router = predicate_router("support", lambda m: ["standard"], policy=policy)
    flow = create(router.to(handler("standard"), handler("premium")))
    async with flow:
        for tenant in ("vip", "acme"):
            await flow.emit(Message(payload=f"ticket from {tenant}", headers=Headers(tenant=tenant)))
            lines.append(await flow.fetch())
    return lines


def main() -> None:
    for line in asyncio.run(run()):
        print(line)


if __name__ == "__main__":
    main()
