"""Trace tools: print or replay a trace's stored history (PenguiFlow's ``penguiflow-admin``).

    python -m podium.flow.admin history TRACE --state-store package.module:factory [--tail N] [--json]
    python -m podium.flow.admin replay TRACE --state-store package.module:factory [--delay S] [--tail N]

``--state-store`` names a callable (sync or async) returning a StateStore. For podium's own stores,
``podium.store.flow_state:from_env`` opens the store at ``$PODIUM_FLOW_STATE_URL`` (``sqlite:///path``,
``memory://``). ``history`` prints one JSON object per event, as PenguiFlow does; ``--json`` prints the
whole history as one JSON array instead. ``replay`` prints a header line, then the events, waiting
``--delay`` seconds between them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import _clock
from .state import StateStore, StoredEvent

__all__ = ["event_record", "load_state_store", "main", "render_events"]


def _resolve_factory(spec: str) -> Callable[[], Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--state-store {spec!r}: expected 'package.module:callable'")
    factory = getattr(importlib.import_module(module_name), attr, None)
    if factory is None:
        raise ValueError(f"--state-store {spec!r}: {module_name} has no attribute {attr!r}")
    if not callable(factory):
        raise TypeError(f"--state-store {spec!r} is a {type(factory).__name__}, not a callable")
    return factory  # type: ignore[no-any-return]


async def load_state_store(spec: str) -> StateStore:
    """Call the ``module:callable`` factory (awaiting it if it is async) and check what it returns."""
    instance = _resolve_factory(spec)()
    if inspect.isawaitable(instance):
        instance = await instance
    missing = [
        name for name in ("save_event", "load_history", "save_remote_binding") if not hasattr(instance, name)
    ]
    if missing:
        raise TypeError(
            f"--state-store {spec!r} returned {type(instance).__name__}, which lacks {', '.join(missing)}"
        )
    store: StateStore = instance
    return store


def _tail(events: Sequence[StoredEvent], tail: int | None) -> list[StoredEvent]:
    if tail is None:
        return list(events)
    return list(events)[-tail:] if tail > 0 else []


def event_record(event: StoredEvent) -> dict[str, Any]:
    """One stored event as the flat mapping both commands print (its payload plus its identity)."""
    record = dict(event.payload)
    record.setdefault("event", event.kind)
    record.setdefault("trace_id", event.trace_id)
    record.setdefault("node_name", event.node_name)
    record.setdefault("node_id", event.node_id)
    record.setdefault("ts", event.ts)
    return record


def render_events(events: Sequence[StoredEvent], *, tail: int | None = None) -> list[str]:
    """The events (the last ``tail`` of them) as JSON lines, keys sorted, as PenguiFlow prints them."""
    return [json.dumps(event_record(event), sort_keys=True, default=str) for event in _tail(events, tail)]


async def _history(args: argparse.Namespace) -> None:
    store = await load_state_store(args.state_store)
    events = await store.load_history(args.trace_id)
    if args.json:
        print(json.dumps([event_record(e) for e in _tail(events, args.tail)], sort_keys=True, default=str))
        return
    for line in render_events(events, tail=args.tail):
        print(line)


async def _replay(args: argparse.Namespace) -> None:
    store = await load_state_store(args.state_store)
    events = _tail(await store.load_history(args.trace_id), args.tail)
    if not events:
        print(f"# trace {args.trace_id} has no stored events")
        return
    print(f"# replay trace={args.trace_id} events={len(events)}")
    for event in events:
        print(render_events([event])[0], flush=True)
        if args.delay > 0:
            await _clock.sleep(args.delay)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podium-flow-admin", description="Inspect a flow's trace history in a configured StateStore."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-store", required=True, help="a factory returning a StateStore (module:callable)"
    )
    common.add_argument("--tail", type=int, default=None, help="only the last N events of the trace")
    commands = parser.add_subparsers(dest="command", required=True)
    history = commands.add_parser("history", parents=[common], help="print a trace's stored events")
    history.add_argument("trace_id", help="the trace to show")
    history.add_argument("--json", action="store_true", help="one JSON array instead of JSON lines")
    history.set_defaults(handler=_history)
    replay = commands.add_parser("replay", parents=[common], help="print a trace's events as they happened")
    replay.add_argument("trace_id", help="the trace to replay")
    replay.add_argument("--delay", type=float, default=0.0, help="seconds to wait between events")
    replay.set_defaults(handler=_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 1 with ``error: ...`` on stderr when the store cannot be loaded or read."""
    args = _parser().parse_args(argv)
    try:
        asyncio.run(args.handler(args))
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
