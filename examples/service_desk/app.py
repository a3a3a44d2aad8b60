"""A small HTTP service desk that embeds flowengine's `Engine` (FastAPI): start, fire, inspect, inbox, diagram.

The caller says who it is with two headers, `X-Actor` (id) and `X-Roles` (comma-separated); flowengine
does no user management, so a real deployment sets them in its authenticating proxy. Every
`FlowEngineError` becomes one JSON error body `{"error", "message", ...}` with an HTTP status chosen by
its class (`STATUS`). Endpoints are plain `def`s: FastAPI runs them in its thread pool, because the
engine's calls block on the database.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from flowengine import (
    Actor,
    ConcurrencyConflict,
    DataValidationError,
    Engine,
    EventNotAllowed,
    FlowEngineError,
    GuardRejected,
    HookRegistry,
    InstanceExists,
    RoleNotAllowed,
    StoreError,
    UnknownInstance,
    UnknownProcess,
)

REPO_PROCESSES = Path(__file__).resolve().parents[2] / "processes"

# Most specific first: GuardRejected and RoleNotAllowed are EventNotAllowed too.
STATUS: tuple[tuple[type[FlowEngineError], int], ...] = (
    (UnknownInstance, 404),
    (UnknownProcess, 404),
    (ConcurrencyConflict, 409),
    (InstanceExists, 409),
    (DataValidationError, 422),
    (GuardRejected, 422),
    (RoleNotAllowed, 422),
    (EventNotAllowed, 422),
    (StoreError, 503),
)


class StartRequest(BaseModel):
    process: str = Field(examples=["repair_service"])
    data: dict[str, Any] = {}
    id: str | None = Field(default=None, description="Name the instance (a business key); 409 if taken.")


class FireRequest(BaseModel):
    payload: dict[str, Any] = {}
    expected_revision: int | None = Field(
        default=None, description="Refuse with 409 unless the instance is still at this revision.")
    idempotency_key: str | None = Field(default=None, description="A retried fire with this key returns the "
                                        "first result instead of firing again.")


def caller(x_actor: Annotated[str | None, Header()] = None, x_roles: Annotated[str, Header()] = "") -> Actor:
    """The actor from `X-Actor` and `X-Roles: role_a, role_b` (id defaults to the first role)."""
    roles = [r.strip() for r in x_roles.split(",") if r.strip()]
    return Actor(x_actor or (roles[0] if roles else "anonymous"), roles)


def error_body(exc: FlowEngineError) -> dict[str, Any]:
    """What a client branches on: the error's class name and its data, plus the message for people."""
    body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, EventNotAllowed):
        body.update(state=exc.state, event=exc.event, allowed=list(exc.allowed))
    if isinstance(exc, RoleNotAllowed):
        body["allowed_roles"] = list(exc.allowed_roles)
    if isinstance(exc, GuardRejected):
        body.update(guard=exc.guard, reason=exc.reason)
    if isinstance(exc, DataValidationError):
        body["errors"] = list(exc.errors)
    if isinstance(exc, ConcurrencyConflict):
        body.update(expected_revision=exc.expected_revision, actual_revision=exc.actual_revision)
    if isinstance(exc, UnknownProcess):
        body["known"] = sorted(exc.known)
    return body


def status_of(exc: FlowEngineError) -> int:
    # Anything else (a hook that raised, a broken definition) is the server's fault.
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 500)


def diagram_renderer() -> Callable[..., Any] | None:
    """`flowengine.render.render_instance` if this flowengine has it (it is optional here)."""
    if importlib.util.find_spec("flowengine.render") is None:
        return None
    renderer: Callable[..., Any] | None = getattr(importlib.import_module("flowengine.render"),
                                                  "render_instance", None)
    return renderer


def create_app(db_url: str, processes_dir: str | Path | Mapping[str, Any], *,
               hooks: HookRegistry | None = None) -> FastAPI:
    """The service over one engine on `db_url` with the processes in `processes_dir`.

    `processes_dir` may also be definitions already loaded (`flowengine.definition.loader.load_directory`),
    as `Engine(processes=...)` accepts: several apps then share one load. `hooks` default to the shipped ones.
    """
    engine = Engine(db_url, processes=processes_dir, hooks=hooks)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(title="flowengine service desk", lifespan=lifespan)
    app.state.engine = engine

    @app.exception_handler(FlowEngineError)
    async def flowengine_error(_request: Request, exc: FlowEngineError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=status_of(exc))

    def view(instance_id: str, actor: Actor) -> dict[str, Any]:
        body = engine.get(instance_id).to_json()
        body["allowed_for_you"] = list(engine.available_events(instance_id, actor))
        return body

    @app.post("/instances", status_code=201)
    def start(body: StartRequest, actor: Annotated[Actor, Depends(caller)]) -> dict[str, Any]:
        """Start an instance of `process` with start `data`; `id` names it."""
        inst = engine.start(body.process, data=body.data, actor=actor, instance_id=body.id)
        return view(inst.id, actor)

    @app.post("/instances/{instance_id}/events/{event}")
    def fire(instance_id: str, event: str, actor: Annotated[Actor, Depends(caller)],
             body: FireRequest | None = None) -> dict[str, Any]:
        """Fire `event` with `payload`; `expected_revision` makes it optimistic (409 if someone was first)."""
        fired = body or FireRequest()
        step = engine.fire(instance_id, event, data=fired.payload, actor=actor,
                           expected_revision=fired.expected_revision, idempotency_key=fired.idempotency_key)
        return step.to_json()

    @app.get("/instances/{instance_id}")
    def get(instance_id: str, actor: Annotated[Actor, Depends(caller)]) -> dict[str, Any]:
        """The instance, what can be fired now (`allowed_events`) and what the caller may fire (`allowed_for_you`)."""
        return view(instance_id, actor)

    @app.get("/instances/{instance_id}/history")
    def history(instance_id: str) -> list[dict[str, Any]]:
        return [entry.to_json() for entry in engine.history(instance_id)]

    @app.get("/inbox/{role}")
    def inbox(role: str) -> list[dict[str, Any]]:
        """Running instances where `role` can move the work on now, oldest first."""
        return [{"instance": inst.to_json(), "events": list(events)} for inst, events in engine.inbox(role)]

    @app.get("/instances/{instance_id}/diagram.svg", response_model=None)
    def diagram(instance_id: str) -> Response:
        """The process diagram with the instance's current state highlighted."""
        engine.get(instance_id)  # 404 before 501: an unknown instance is the caller's mistake either way
        render = diagram_renderer()
        if render is None:
            return JSONResponse({"error": "NotImplemented", "message": "diagrams need flowengine.render, which this "
                                 "flowengine installation does not have"}, status_code=501)
        svg = render(engine, instance_id, format="svg")
        return Response(svg if isinstance(svg, bytes) else str(svg).encode(), media_type="image/svg+xml")

    return app


def app_from_env() -> FastAPI:
    """For `uvicorn --factory`: FLOWENGINE_DB (default sqlite:///service_desk.db) and FLOWENGINE_PROCESSES."""
    return create_app(os.environ.get("FLOWENGINE_DB", "sqlite:///service_desk.db"),
                      os.environ.get("FLOWENGINE_PROCESSES", str(REPO_PROCESSES)))
