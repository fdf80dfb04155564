"""The workcell manager's REST API, as MADSci 0.8.x serves it, plus locations, resources and datapoints.

``create_app(engine)`` builds the FastAPI app around a :class:`~podium.workcell.engine.WorkcellEngine`
(started and stopped with the app's lifespan). MADSci's ``WorkcellClient`` talks to it unchanged; the
data routes (``GET /datapoint/{id}``, ``/datapoint/{id}/value``, ``/datapoints``) answer MADSci's
``DataClient`` too, so ``DATA_SERVER_URL`` may point at the same server (or at ``--data-port``).

Errors are JSON ``{"detail": ...}``. 422 answers FastAPI's list of errors, ``{"detail": [{"loc", "msg",
"type", "field", "step"}]}``, for any input refused (a submission that cannot run names its step and field;
nothing is queued or written); 404 for unknown ids, 409 for an operation the workflow's status does not
allow, 413 for a body over the route's limit (:data:`MAX_BODY_BYTES`, :data:`MAX_UPLOAD_BYTES` for the
multipart run submission); the OpenAPI document declares them all.

Tokens: every route but the public ones (:data:`PUBLIC_PATHS`: ``/health`` and the docs) needs one of the
workcell's API tokens (``Authorization: Bearer``, Basic auth from ``http://podium:<token>@host:8005``, or
``X-Client-Token``), checked before anything else; 401 otherwise. Node URLs are shown without their tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError

from podium.clock import Clock
from podium.dashboard import DASHBOARD_PATHS, mount_workcell_dashboard
from podium.errors import ConfigError, ConflictError, InvalidInputError, NotFoundError, PodiumError
from podium.tokens import DOCS_PATHS, TokenGuard, TokenSet, new_token, redact_url, url_with_token
from podium.workcell.actions import OwnershipInfo
from podium.workcell.engine import FileInput, WorkcellEngine
from podium.workcell.errors import WorkflowStateError
from podium.workcell.files import safe_filename
from podium.workcell.inputs import (
    MAX_NAME_CHARS,
    check_file_input_paths,
    check_finite,
    check_json_value,
    check_name,
)
from podium.workcell.locations import LocationDefinition
from podium.workcell.resources import ResourceDefinition
from podium.workcell.settings import WorkcellManagerSettings
from podium.workcell.workcell import load_workcell
from podium.workcell.workflows import Workflow, WorkflowDefinition

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_LIST_NUMBER",
    "MAX_UPLOAD_BYTES",
    "PUBLIC_PATHS",
    "BodyLimit",
    "build_engine",
    "create_app",
    "serve_asgi",
    "serve_workcell",
]

PUBLIC_PATHS = frozenset({"/health", *DOCS_PATHS, *DASHBOARD_PATHS})
"""Routes that answer without a token."""
MAX_BODY_BYTES = 4 * 1024 * 1024
"""The largest request body a route takes (413 above), but the run submission's."""
MAX_UPLOAD_BYTES = 1024 * 1024 * 1024
"""The largest ``POST /workflow`` body (a multipart form that carries the run's input files)."""
MAX_LIST_NUMBER = 10_000
"""The most records one listing (``number=``) answers."""
_UPLOAD_ROUTES = frozenset({"/workflow"})


class ErrorBody(BaseModel):
    """An error answer: ``detail`` says what went wrong."""

    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body cannot be read (not JSON, not UTF-8, a broken form)"},
    401: {"model": ErrorBody, "description": "No valid API token"},
    404: {"model": ErrorBody, "description": "No such workflow, node, location, resource or datapoint"},
    409: {"model": ErrorBody, "description": "Not allowed in the current state"},
    413: {"model": ErrorBody, "description": "The request body is too large"},
}
"""Every route may answer these (the token guard and the one error table below)."""


class BodyLimit:
    """Pure-ASGI middleware: a request whose body is over the route's limit is answered 413 without the
    route seeing it (by its ``Content-Length``, or once the streamed body passes the limit: the route is
    then told the client left, and whatever it answers is replaced by the 413)."""

    def __init__(
        self, app: Any, *, default_bytes: int, upload_bytes: int, upload_paths: frozenset[str]
    ) -> None:
        self.app, self.default_bytes, self.upload_bytes = app, default_bytes, upload_bytes
        self.upload_paths = upload_paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_bytes if scope.get("path") in self.upload_paths else self.default_bytes
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        seen = 0
        over = started = False

        async def counted() -> Any:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Any) -> None:
            nonlocal started
            if not over:
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _too_large(send, limit)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"detail": f"the request body is larger than {limit} bytes"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _invalid(exc: InvalidInputError) -> JSONResponse:
    """FastAPI's 422 shape for podium's own refusals: ``loc`` is the step (if any) then the field path."""
    step = getattr(exc, "step", None)
    loc = [*(["steps", step] if step is not None else []), *(exc.field.split(".") if exc.field else [])]
    kind = "".join(f"_{c.lower()}" if c.isupper() else c for c in type(exc).__name__).lstrip("_")
    item = {"loc": loc or ["body"], "msg": str(exc), "type": kind, "field": exc.field, "step": step}
    return JSONResponse({"detail": [item]}, status_code=422)


def _body_error(exc: ValidationError, *where: str) -> RequestValidationError:
    """A pydantic error in a body (or a form field's JSON) as FastAPI reports a request's."""
    return RequestValidationError(
        [
            {"loc": (*where, *e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
    )


def _wf(wf: Workflow) -> dict[str, Any]:
    return wf.model_dump(mode="json")


def _changed(before: Workflow) -> Any:
    marker = (
        before.status.model_dump(),
        [s.status for s in before.steps],
        list(before.scheduler_metadata.reasons),
    )

    def check(w: Workflow) -> bool:
        return (
            w.status.terminal
            or (w.status.model_dump(), [s.status for s in w.steps], w.scheduler_metadata.reasons) != marker
        )

    return check


def _redact(doc: Any) -> Any:
    """A JSON document with the tokens in node URLs (``node_url``, ``nodes: {name: url}``) masked."""
    if isinstance(doc, dict):
        return {
            k: redact_url(v) if isinstance(v, str) and (k == "node_url" or "@" in v) else _redact(v)
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [_redact(v) for v in doc]
    return doc


def create_app(
    engine: WorkcellEngine,
    *,
    manage_engine: bool = True,
    api_tokens: TokenSet | Iterable[str] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_wait_s: float = 60.0,
) -> FastAPI:
    """The ASGI app. With ``manage_engine`` the app's lifespan starts and stops the engine.

    ``max_body_bytes``/``max_upload_bytes`` limit request bodies (413 above); ``max_wait_s`` caps how long
    one long poll (``GET /workflow/{id}?wait_s=``) is held.

    ``api_tokens`` (tokens or a :class:`~podium.tokens.TokenSet`) add to the engine settings' tokens;
    with none at all this raises :class:`~podium.errors.ConfigError` (``podium workcell serve`` and
    :func:`serve_workcell` generate one).
    """
    given = api_tokens if isinstance(api_tokens, TokenSet) else TokenSet.from_tokens(api_tokens or ())
    tokens = TokenSet([*engine.settings.api_token_hashes, *given.hashes])
    if not tokens:
        raise ConfigError(
            "the workcell API needs a token: set WORKCELL_API_TOKENS (or api_tokens in the settings), "
            "or pass api_tokens= to create_app"
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_engine:
            await engine.start()
        try:
            yield
        finally:
            if manage_engine:
                await engine.stop()

    app = FastAPI(title=f"podium workcell: {engine.workcell.name}", lifespan=lifespan, responses=_ERRORS)
    app.state.engine = engine
    app.add_middleware(
        BodyLimit, default_bytes=max_body_bytes, upload_bytes=max_upload_bytes, upload_paths=_UPLOAD_ROUTES
    )
    app.add_middleware(TokenGuard, tokens=tokens, public=PUBLIC_PATHS, what="the workcell")

    @app.exception_handler(InvalidInputError)
    async def _bad(_: Request, exc: InvalidInputError) -> JSONResponse:
        return _invalid(exc)

    @app.exception_handler(NotFoundError)
    async def _missing(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(WorkflowStateError)
    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, exc: PodiumError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    # --- workcell and nodes ---------------------------------------------------------------------

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness plus how many nodes answer."""
        reachable = sum(1 for n in engine.nodes.values() if n.status and not n.status.get("disconnected"))
        return {
            "healthy": True,
            "description": "ok",
            "nodes_reachable": reachable,
            "total_nodes": len(engine.nodes),
        }

    @app.get("/workcell")
    async def get_workcell() -> dict[str, Any]:
        """The workcell's info."""
        return _redact(engine.info.model_dump(mode="json"))  # type: ignore[no-any-return]

    @app.get("/state")
    async def get_state() -> dict[str, Any]:
        """The workcell's live state: status, queue, nodes."""
        return _redact(engine.state().model_dump(mode="json"))  # type: ignore[no-any-return]

    @app.get("/nodes")
    async def get_nodes() -> dict[str, Any]:
        """Every node: URL and last reported status, info and state."""
        return {k: _redact(v.model_dump(mode="json")) for k, v in engine.nodes.items()}

    @app.get("/node/{node_name}")
    async def get_node(node_name: str) -> dict[str, Any]:
        """One node."""
        node = engine.nodes.get(node_name)
        if node is None:
            raise HTTPException(404, f"no node {node_name!r} in the workcell")
        return _redact(node.model_dump(mode="json"))  # type: ignore[no-any-return]

    @app.post("/node")
    async def add_node(
        node_name: Annotated[str, Query(min_length=1, max_length=MAX_NAME_CHARS)],
        node_url: Annotated[str, Query(min_length=1, max_length=2048)],
    ) -> dict[str, Any]:
        """Add a node (query parameters ``node_name`` and ``node_url``, as MADSci's client sends them)."""
        return _redact((await engine.add_node(node_name, node_url)).model_dump(mode="json"))  # type: ignore[no-any-return]

    @app.post("/admin/{command}")
    async def admin_all(command: str) -> list[dict[str, Any]]:
        """Send an admin command to every node that offers it."""
        return await engine.admin(command)

    @app.post("/admin/{command}/{node}")
    async def admin_node(command: str, node: str) -> dict[str, Any]:
        """Send an admin command to one node."""
        out = await engine.admin(command, node)
        return out[0] if out else {"success": False}

    # --- workflows ------------------------------------------------------------------------------

    @app.get("/workflows/active")
    async def active() -> dict[str, Any]:
        """Workflows not yet finished, by id."""
        return {w.workflow_id: _wf(w) for w in engine.active_workflows()}

    @app.get("/workflows/archived")
    async def archived(number: Annotated[int, Query(ge=0, le=MAX_LIST_NUMBER)] = 20) -> dict[str, Any]:
        """The newest finished workflows, by id."""
        return {w.workflow_id: _wf(w) for w in await engine.archived_workflows(number)}

    @app.get("/workflows/queue")
    async def queue() -> list[dict[str, Any]]:
        """Active workflows in scheduling order."""
        return [_wf(w) for w in engine.queue()]

    @app.post("/workflows/clear_completed")
    async def clear_completed() -> dict[str, int]:
        """Drop finished workflows from memory (they stay in the archive)."""
        return {"cleared": await engine.clear_completed()}

    @app.get("/workflow/{workflow_id}")
    async def get_workflow(
        workflow_id: str,
        wait_s: Annotated[float | None, Query(ge=0, le=60)] = None,
        until: Annotated[Literal["changed", "terminal"], Query()] = "changed",
    ) -> dict[str, Any]:
        """A workflow run. podium extension: with ``wait_s`` the answer waits until it changes (or ends;
        with ``until=terminal``, only until it ends: a waiter that shows no progress is not woken per step)."""
        wf = await engine.get_workflow(workflow_id, copy=False)  # dumped or marked before any await
        if wait_s and not wf.status.terminal:
            check = _changed(wf) if until == "changed" else None
            with contextlib.suppress(TimeoutError):
                wf = await engine.wait_for(workflow_id, timeout_s=min(wait_s, max_wait_s), until=check)
        return _wf(wf)

    @app.post("/workflow/{workflow_id}/pause")
    async def pause(workflow_id: str) -> dict[str, Any]:
        """Pause a workflow."""
        return _wf(await engine.pause(workflow_id))

    @app.post("/workflow/{workflow_id}/resume")
    async def resume(workflow_id: str) -> dict[str, Any]:
        """Resume a paused workflow."""
        return _wf(await engine.resume(workflow_id))

    @app.post("/workflow/{workflow_id}/cancel")
    async def cancel(workflow_id: str) -> dict[str, Any]:
        """Cancel a workflow."""
        return _wf(await engine.cancel(workflow_id))

    @app.post("/workflow/{workflow_id}/retry")
    async def retry(
        workflow_id: str, index: Annotated[int, Query(ge=-1, le=MAX_LIST_NUMBER)] = -1
    ) -> dict[str, Any]:
        """Run a finished workflow again from step ``index`` (default: where it stopped)."""
        return _wf(await engine.retry(workflow_id, index))

    @app.post("/workflow/{workflow_id}/resubmit")
    async def resubmit(workflow_id: str) -> dict[str, Any]:
        """A new run of the same definition with the same inputs."""
        return _wf(await engine.resubmit(workflow_id))

    @app.post("/workflow_definition")
    async def submit_definition(definition: WorkflowDefinition) -> str:
        """Store a workflow definition; answer its id (a JSON string)."""
        check_json_value(definition.model_dump(mode="json"), field="body")
        return await engine.save_definition(definition)

    @app.get("/workflow_definition/{definition_id}")
    async def get_definition(definition_id: str) -> dict[str, Any]:
        """A stored workflow definition."""
        return (await engine.get_definition(definition_id)).model_dump(mode="json")

    @app.post("/workflow")
    async def start_workflow(
        workflow_definition_id: Annotated[str, Form()],
        ownership_info: Annotated[str | None, Form()] = None,
        json_inputs: Annotated[str | None, Form()] = None,
        file_input_paths: Annotated[str | None, Form()] = None,
        files: Annotated[list[UploadFile] | None, File()] = None,
    ) -> dict[str, Any]:
        """Start a run of a stored definition (multipart form, as MADSci's client sends it)."""
        inputs = _json_object(json_inputs, "json_inputs")
        paths = {k: str(v) for k, v in _json_object(file_input_paths, "file_input_paths").items()}
        check_file_input_paths(paths)
        check_json_value(inputs, field="json_inputs")
        owner = OwnershipInfo()
        if ownership_info:
            try:
                owner = OwnershipInfo.model_validate_json(ownership_info)
            except ValidationError as exc:
                raise _body_error(exc, "body", "ownership_info") from None
        uploads: dict[str, FileInput] = {}
        for upload in files or []:
            # MADSci's client names each uploaded part after its parameter key.
            key = check_name(upload.filename or "", field="files")
            content = await upload.read()
            name = safe_filename(paths.get(key, key).replace("\\", "/").rsplit("/", 1)[-1] or key)
            uploads[key] = (name, content)
        wf = await engine.submit(
            workflow_definition_id,
            json_inputs=inputs,
            file_inputs=uploads,
            file_input_paths=paths,
            ownership=owner,
        )
        return _wf(wf)

    # --- locations and resources ----------------------------------------------------------------

    @app.get("/locations")
    async def locations() -> list[dict[str, Any]]:
        """Every location."""
        return [loc.to_json() for loc in engine.locations.values()]

    @app.get("/location/{ref}")
    async def location(ref: str) -> dict[str, Any]:
        """A location by name or id, with its container's content."""
        loc = engine.get_location(ref)
        doc = loc.to_json()
        if loc.resource_id:
            doc["resource"] = engine.resources.tree(loc.resource_id)
        return doc

    @app.post("/location")
    async def add_location(definition: LocationDefinition) -> dict[str, Any]:
        """Add a location."""
        check_name(definition.location_name, field="location_name")
        check_name(definition.location_id, field="location_id")
        check_json_value(definition.model_dump(mode="json"), field="body")
        return (await engine.add_location(definition)).to_json()

    @app.get("/resources")
    async def resources(
        resource_name: str | None = None,
        resource_class: str | None = None,
        base_type: str | None = None,
        parent_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Resources matching the filters."""
        found = engine.resources.query(
            resource_name=resource_name,
            resource_class=resource_class,
            base_type=base_type,
            parent_id=parent_id,
        )
        return [r.model_dump(mode="json") for r in found]

    @app.get("/resource/{ref}")
    async def resource(ref: str) -> dict[str, Any]:
        """A resource by id or name (or a location's container), with its children."""
        return engine.resources.tree(engine.resolve_container(ref))

    @app.post("/resource")
    async def create_resource(
        definition: ResourceDefinition, parent: str | None = None, key: str | None = None
    ) -> list[dict[str, Any]]:
        """Create a resource from a definition, optionally inside a container (id, name or location)."""
        check_json_value(definition.model_dump(mode="json"), field="body")
        return [
            r.model_dump(mode="json")
            for r in await engine.create_resource(definition, parent=parent, key=key)
        ]

    @app.post("/resource/{container}/push")
    async def push(container: str, resource_id: str, key: str | None = None) -> list[dict[str, Any]]:
        """Put a resource into a container."""
        cid = engine.resolve_container(container)
        rid = engine.resolve_container(resource_id)
        return [
            r.model_dump(mode="json")
            for r in await engine.change_resources(lambda t: t.push(cid, rid, key=key))
        ]

    @app.post("/resource/{container}/pop")
    async def pop(container: str, key: str | None = None) -> list[dict[str, Any]]:
        """Take a resource out of a container."""
        cid = engine.resolve_container(container)
        return [
            r.model_dump(mode="json") for r in await engine.change_resources(lambda t: t.pop(cid, key=key)[1])
        ]

    @app.post("/resource/{ref}/quantity")
    async def change_quantity(
        ref: str, delta: Annotated[float, Query(allow_inf_nan=False)]
    ) -> list[dict[str, Any]]:
        """Add ``delta`` (a finite number) to a consumable's quantity (negative to use some)."""
        check_finite(delta, field="delta")
        rid = engine.resolve_container(ref)
        return [
            r.model_dump(mode="json")
            for r in await engine.change_resources(lambda t: t.change_quantity(rid, delta))
        ]

    # --- datapoints (the data server routes MADSci's DataClient reads) ----------------------------

    @app.get("/datapoint/{datapoint_id}")
    async def get_datapoint(datapoint_id: str) -> dict[str, Any]:
        """A datapoint's record."""
        return (await engine.datapoints.get(datapoint_id)).to_json()

    @app.get("/datapoint/{datapoint_id}/value", response_model=None)
    async def get_datapoint_value(datapoint_id: str) -> JSONResponse | FileResponse | StreamingResponse:
        """A datapoint's value: the JSON value, or the file itself (from S3 when its local copy is gone)."""
        dp = await engine.datapoints.get(datapoint_id)
        if dp.data_type == "json":
            return JSONResponse(dp.value)
        found = await engine.datapoints.open_file(dp)
        if isinstance(found, Path):
            return FileResponse(found, filename=found.name)
        name = Path(dp.path or "file").name
        quoted = urllib.parse.quote(name)  # as FileResponse names a file
        disposition = (
            f'attachment; filename="{name}"' if quoted == name else f"attachment; filename*=utf-8''{quoted}"
        )
        headers = {"Content-Disposition": disposition}
        if dp.size_bytes is not None:
            headers["Content-Length"] = str(dp.size_bytes)
        return StreamingResponse(found, media_type="application/octet-stream", headers=headers)

    @app.get("/datapoints")
    async def datapoints(
        number: Annotated[int, Query(ge=0, le=MAX_LIST_NUMBER)] = 100, workflow_id: str | None = None
    ) -> dict[str, Any]:
        """The newest datapoints (or those of one workflow), by id."""
        found = await (
            engine.datapoints.for_workflow(workflow_id) if workflow_id else engine.datapoints.latest(number)
        )
        return {dp.datapoint_id: dp.to_json() for dp in found}

    mount_workcell_dashboard(app, engine, definition_model=WorkflowDefinition)

    return app


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_object(text: str | None, field: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"not JSON ({getattr(exc, 'msg', exc)})", field=field) from None
    if not isinstance(value, dict):
        raise InvalidInputError("must be a JSON object", field=field)
    return value


def build_engine(
    workcell_file: str | Path | None = None,
    *,
    settings_dir: str | Path | None = None,
    settings_file: str | Path | None = None,
    clock: Clock | None = None,
    **overrides: Any,
) -> WorkcellEngine:
    """An engine from a workcell file and the settings sources (arguments beat the file's ``settings``).

    Without a workcell file (here or as ``workcell_file`` in the settings), the workcell is the one a MADSci
    0.8 lab's settings describe (``workcell_nodes``, ``location_locations``, ... in ``settings_file`` and
    the settings directory, which defaults to that file's folder; see :mod:`podium.workcell.labconfig`).
    The store is ``store_url`` (default: a SQLite file in ``data_dir``). Raises ConfigError on bad input.
    """
    from podium.store import open_store
    from podium.workcell.labconfig import lab_workcell

    if settings_file is not None and settings_dir is None:
        settings_dir = Path(settings_file).expanduser().parent
    workcell = load_workcell(workcell_file) if workcell_file else None
    merged = {
        **(workcell.settings if workcell else {}),
        **{k: v for k, v in overrides.items() if v is not None},
    }
    settings = WorkcellManagerSettings.load(settings_dir=settings_dir, settings_file=settings_file, **merged)
    if workcell is None:
        if settings.workcell_file is None:
            workcell = lab_workcell(settings, settings_dir=settings_dir, settings_file=settings_file)
        else:
            workcell = load_workcell(settings.workcell_file)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.resolved_store_url(), clock=clock)
    return WorkcellEngine(
        workcell, store=store, data_dir=settings.data_dir, settings=settings, clock=clock, own_store=True
    )


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn as a task of the running loop (port 0: a free one); yields its URL
    once it accepts connections."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY: without it, uvicorn's h11 replies meet the client's
    # delayed ACK and every request costs ~40 ms on loopback.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    # An open event stream (a dashboard) must not hold a stopping server for long.
    config = uvicorn.Config(
        app, log_level=log_level, lifespan="on", log_config=None, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="workcell-asgi-server")
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)  # uvicorn has no started event; this only waits for start-up
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def serve_workcell(
    engine: WorkcellEngine,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    token: str | None = None,
) -> AsyncIterator[str]:
    """Serve the workcell app (engine started and stopped with it); yields its URL.

    ``token`` opens the API besides the settings' tokens; with neither, a fresh token is made for this
    server. When a token is given or made, the URL yielded carries it as userinfo
    (``http://podium:<token>@127.0.0.1:PORT``), the form podium's and MADSci's clients accept.
    """
    if token is None and not engine.settings.api_token_hashes:
        token = new_token()
    app = create_app(engine, api_tokens=[token] if token else None)
    async with serve_asgi(app, host=host, port=port, log_level=log_level) as url:
        yield url_with_token(url, token) if token else url
