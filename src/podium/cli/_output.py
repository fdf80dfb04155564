"""What the daily commands share: where the servers are, tables or JSON, one-line errors and exit codes.

Exit codes (documented in ``docs/cli.md``; scripts may rely on them):

====  ==========================================================================================
0     done
1     the workflow or job ended failed or cancelled (``--wait``), or the server failed
2     usage: a bad option, argument or input file, or a request the server refused as invalid
3     not found: no such workflow, job, node, blueprint or datapoint
4     the server refused the token (401/403)
5     the server could not be reached
6     the request does not fit the current state (409: pausing a finished workflow, a standby)
7     ``--wait`` gave up (``--timeout``) before the end
====  ==========================================================================================
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import typer

from podium.errors import PodiumError

__all__ = [
    "SERVER_TOKEN",
    "SERVER_URL",
    "WORKCELL_TOKEN",
    "WORKCELL_URL",
    "ExitCode",
    "fail",
    "one_line_errors",
    "parse_pairs",
    "print_json",
    "print_table",
]


class ExitCode(enum.IntEnum):
    """The exit codes of the daily commands (see the module docstring)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    AUTH = 4
    UNREACHABLE = 5
    CONFLICT = 6
    TIMEOUT = 7


WORKCELL_URL = typer.Option(
    "--url",
    "-u",
    envvar=["PODIUM_WORKCELL_URL", "WORKCELL_SERVER_URL"],
    help="The workcell manager's URL (PODIUM_WORKCELL_URL, WORKCELL_SERVER_URL).",
)
WORKCELL_TOKEN = typer.Option(
    "--token",
    envvar="WORKCELL_API_TOKEN",
    help="The workcell API token (default: the token a local `podium workcell serve` generated).",
    show_default=False,
)
SERVER_URL = typer.Option(
    "--url",
    "-u",
    envvar="PODIUM_SERVER_URL",
    help="The jobs server's URL (PODIUM_SERVER_URL).",
)
SERVER_TOKEN = typer.Option(
    "--token",
    envvar=["PODIUM_CLIENT_TOKEN", "CLIENT_TOKEN"],
    help="A client token of the jobs server (PODIUM_CLIENT_TOKEN, CLIENT_TOKEN).",
    show_default=False,
)

_STATUS_EXIT = {401: ExitCode.AUTH, 403: ExitCode.AUTH, 404: ExitCode.NOT_FOUND, 409: ExitCode.CONFLICT}


def fail(message: str, code: ExitCode) -> typer.Exit:
    """Print ``error: <message>`` on stderr and return the exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(int(code))


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if key in body:
                return _detail(body[key])
        return json.dumps(body)
    if isinstance(body, list):  # FastAPI's validation errors
        parts = []
        for item in body:
            if isinstance(item, dict) and "msg" in item:
                where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(body)


@contextlib.contextmanager
def one_line_errors(url: str) -> Iterator[None]:
    """Turn what can go wrong talking to a server into one line on stderr and a documented exit code."""
    from podium.client.jobs import JobClientError, JobWaitTimeout
    from podium.client.workcell import WorkcellClientError, WorkflowFailedError

    try:
        yield
    except (WorkcellClientError, JobClientError) as exc:
        body = exc.detail if isinstance(exc, WorkcellClientError) else exc.body
        code = _STATUS_EXIT.get(exc.status_code)
        if code is None:
            code = ExitCode.USAGE if 400 <= exc.status_code < 500 else ExitCode.FAILED
        hint = ""
        if code is ExitCode.AUTH:
            hint = " (pass --token or set the token's environment variable; see `--help`)"
        raise fail(f"{url} answered {exc.status_code}: {_detail(body)}{hint}", code) from None
    except httpx.TransportError as exc:
        raise fail(
            f"cannot reach {url} ({type(exc).__name__}: {exc or 'no answer'}); is the server running? "
            "(--url or the URL's environment variable)",
            ExitCode.UNREACHABLE,
        ) from None
    except WorkflowFailedError as exc:
        raise fail(str(exc), ExitCode.FAILED) from None
    except (JobWaitTimeout, TimeoutError) as exc:
        raise fail(f"gave up waiting: {exc}", ExitCode.TIMEOUT) from None
    except (PodiumError, OSError, ValueError) as exc:  # a bad input file, a bad value
        raise fail(str(exc), ExitCode.USAGE) from None


def parse_pairs(items: Sequence[str] | None, *, parse: bool, option: str) -> dict[str, Any]:
    """``name=value`` options as a dict; with ``parse``, values that read as JSON are JSON (``n=3`` is a number,
    ``name=plate`` a string). A malformed item is a :class:`ValueError` naming the option and the item."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} {item!r}: expected name=value")
        if parse:
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                out[key] = value
        else:
            out[key] = value
    return out


def print_json(data: Any) -> None:
    """JSON for scripts, on stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> None:
    """A table for people (rich), on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")  # a narrow terminal wraps ids, never cuts them
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    Console().print(table)
