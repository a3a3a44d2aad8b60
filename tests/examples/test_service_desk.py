"""examples/service_desk: every endpoint and error status through TestClient, then a real uvicorn under a race."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the service desk example needs fastapi: pip install -e '.[examples]'")

import httpx

with warnings.catch_warnings():
    # Starlette warns at import that its TestClient will move to httpx2; the client still works as is.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from examples.service_desk import app as desk
from flowengine import ActionContext, GuardContext, HookRegistry
from flowengine.definition.loader import load_directory
from flowengine.shipped import hooks as shipped_hooks
from tests.conftest import FIXTURES, PROCESSES, ROOT

CLERK = {"X-Actor": "clerk-zhao", "X-Roles": "service_clerk"}
ENGINEER = {"X-Actor": "eng-wang", "X-Roles": "repair_engineer"}
RP1_START = {"customer_name": "Customer C", "product_model": "NB-14", "serial_no": "SN-1024",
             "fault_symptom": "No display", "warranty_until": "2099-12-31"}
REGISTER = {"appearance_check": "Intact", "configuration_check": "As registered", "engineer": "eng-wang"}
RP1_STEPS: list[tuple[str, dict[str, str], dict[str, Any], str]] = [
    ("register_repair", CLERK, REGISTER, "diagnosis"),
    ("fault_diagnosed", ENGINEER, {"fault_description": "Display cable loose"}, "in_house_repair"),
    ("repair_completed", ENGINEER, {"repair_record": "Cable reseated"}, "self_recheck"),
    ("recheck_passed", ENGINEER, {}, "customer_confirmation"),
    ("customer_confirmed", ENGINEER, {}, "closed"),
]


@pytest.fixture(scope="module")
def definitions() -> Mapping[str, Any]:
    """The shipped processes, loaded and checked once for the module (each app gets its own database)."""
    return load_directory(PROCESSES, hooks=shipped_hooks.names())


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "desk.db"


@pytest.fixture
def client(db_path: Path, definitions: Mapping[str, Any]) -> Iterator[TestClient]:
    with TestClient(desk.create_app(f"sqlite:///{db_path}", definitions)) as c:
        yield c


def test_create_app_loads_a_processes_folder(tmp_path: Path) -> None:
    with TestClient(desk.create_app(f"sqlite:///{tmp_path / 'dir.db'}", str(PROCESSES))) as c:
        assert start(c)["state"] == "intake"


def start(client: TestClient, instance_id: str | None = None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"process": "repair_service", "data": {**RP1_START, **changes}}
    if instance_id is not None:
        body["id"] = instance_id
    response = client.post("/instances", json=body, headers=CLERK)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def fire(client: TestClient, instance_id: str, event: str, headers: dict[str, str],
         payload: dict[str, Any] | None = None, **extra: Any) -> httpx.Response:
    response: httpx.Response = client.post(f"/instances/{instance_id}/events/{event}",
                                           json={"payload": payload or {}, **extra}, headers=headers)
    return response


def test_walks_rp1_to_closed_with_every_read_endpoint(client: TestClient) -> None:
    inst = start(client, "RS-1001")
    assert (inst["id"], inst["state"], inst["revision"]) == ("RS-1001", "intake", 1)
    assert "register_repair" in inst["allowed_for_you"]
    assert client.get("/inbox/repair_engineer").json() == []
    for event, who, payload, target in RP1_STEPS:
        response = fire(client, "RS-1001", event, who, payload, expected_revision=inst["revision"])
        assert response.status_code == 200, response.text
        step = response.json()
        assert (step["event"], step["from"], step["to"]) == (event, inst["state"], target)
        assert step["revision"] == inst["revision"] + 1
        inst = client.get("/instances/RS-1001", headers=who).json()
        assert (inst["state"], inst["revision"]) == (target, step["revision"])
        if target == "diagnosis":
            inbox = client.get("/inbox/repair_engineer").json()
            assert [(i["instance"]["id"], i["events"]) for i in inbox] == [("RS-1001", ["fault_diagnosed"])]
    assert (inst["status"], inst["allowed_events"], inst["allowed_for_you"]) == ("completed", [], [])
    assert inst["data"]["engineer"] == "eng-wang" and inst["data"]["confirmed_at"]
    history = client.get("/instances/RS-1001/history").json()
    assert [h["event"] for h in history] == ["start", *(e for e, _, _, _ in RP1_STEPS)]
    assert [h["to"] for h in history] == ["intake", *(t for _, _, _, t in RP1_STEPS)]
    assert history[1]["actor"] == {"id": "clerk-zhao", "roles": ["service_clerk"]}
    assert history[1]["payload"] == REGISTER
    assert client.get("/inbox/repair_engineer").json() == []


def test_allowed_for_you_follows_the_callers_roles(client: TestClient) -> None:
    inst = start(client)
    as_clerk = client.get(f"/instances/{inst['id']}", headers=CLERK).json()
    as_engineer = client.get(f"/instances/{inst['id']}", headers=ENGINEER).json()
    both = client.get(f"/instances/{inst['id']}", headers={"X-Roles": "service_clerk, repair_engineer"}).json()
    anonymous = client.get(f"/instances/{inst['id']}").json()
    assert as_clerk["allowed_events"] == as_engineer["allowed_events"] == anonymous["allowed_events"]
    assert "register_repair" in as_clerk["allowed_for_you"]
    assert "register_repair" not in as_engineer["allowed_for_you"]
    assert set(both["allowed_for_you"]) == set(as_clerk["allowed_for_you"]) | set(as_engineer["allowed_for_you"])
    assert anonymous["allowed_for_you"] == []
    assert set(as_clerk["allowed_for_you"]) <= set(as_clerk["allowed_events"])


def test_actor_comes_from_the_headers(client: TestClient) -> None:
    inst = start(client)
    assert fire(client, inst["id"], "register_repair", {"X-Actor": "li", "X-Roles": " service_clerk ,"},
                REGISTER).status_code == 200
    assert fire(client, inst["id"], "fault_diagnosed", {"X-Roles": "repair_engineer"},
                {"fault_description": "Loose"}).status_code == 200
    actors = [h["actor"] for h in client.get(f"/instances/{inst['id']}/history").json()]
    assert actors[1:] == [{"id": "li", "roles": ["service_clerk"]},
                          {"id": "repair_engineer", "roles": ["repair_engineer"]}]


def test_idempotency_key_makes_a_retry_safe(client: TestClient) -> None:
    inst = start(client)
    first = fire(client, inst["id"], "register_repair", CLERK, REGISTER, idempotency_key="k-1").json()
    again = fire(client, inst["id"], "register_repair", CLERK, REGISTER, idempotency_key="k-1").json()
    assert (first["revision"], again["revision"], again["replayed"]) == (2, 2, True)


def test_fire_without_a_body_fires_with_an_empty_payload(client: TestClient) -> None:
    inst = start(client)
    response = client.post(f"/instances/{inst['id']}/events/register_repair", headers=CLERK)
    assert response.status_code == 422 and response.json()["error"] == "DataValidationError"


# -- errors ---------------------------------------------------------------------------------------

def test_unknown_instance_is_404_on_every_instance_endpoint(client: TestClient) -> None:
    for response in (client.get("/instances/nope"), client.get("/instances/nope/history"),
                     client.get("/instances/nope/diagram.svg"), fire(client, "nope", "register_repair", CLERK)):
        assert response.status_code == 404, response.text
        assert response.json() == {"error": "UnknownInstance", "message": "unknown instance 'nope'"}


def test_unknown_process_is_404_with_the_known_ones(client: TestClient) -> None:
    response = client.post("/instances", json={"process": "repair_servise", "data": {}}, headers=CLERK)
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "UnknownProcess" and "repair_service" in body["known"]


def test_taken_id_is_409(client: TestClient) -> None:
    start(client, "RS-7")
    response = client.post("/instances", json={"process": "repair_service", "data": RP1_START, "id": "RS-7"},
                           headers=CLERK)
    assert response.status_code == 409
    assert response.json()["error"] == "InstanceExists"


def test_stale_revision_is_409_and_changes_nothing(client: TestClient) -> None:
    inst = start(client)
    assert fire(client, inst["id"], "register_repair", CLERK, REGISTER, expected_revision=1).status_code == 200
    response = fire(client, inst["id"], "fault_diagnosed", ENGINEER, {"fault_description": "x"}, expected_revision=1)
    assert response.status_code == 409
    assert response.json() | {"message": ""} == {"error": "ConcurrencyConflict", "message": "",
                                                  "expected_revision": 1, "actual_revision": 2}
    assert client.get(f"/instances/{inst['id']}").json()["state"] == "diagnosis"


def test_bad_start_data_is_422_with_the_errors(client: TestClient) -> None:
    data = {k: v for k, v in RP1_START.items() if k != "serial_no"}
    response = client.post("/instances", json={"process": "repair_service", "data": {**data, "colour": "red"}},
                           headers=CLERK)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "DataValidationError"
    assert any("serial_no" in e for e in body["errors"]) and any("colour" in e for e in body["errors"])


def test_event_not_allowed_is_422_with_what_is_allowed(client: TestClient) -> None:
    inst = start(client)
    response = fire(client, inst["id"], "customer_confirmed", ENGINEER)
    assert response.status_code == 422
    body = response.json()
    assert (body["error"], body["state"], body["event"]) == ("EventNotAllowed", "intake", "customer_confirmed")
    assert body["allowed"] == client.get(f"/instances/{inst['id']}").json()["allowed_events"]
    assert "register_repair" in body["allowed"]


def test_wrong_role_is_422_with_the_allowed_roles(client: TestClient) -> None:
    inst = start(client)
    response = fire(client, inst["id"], "register_repair", ENGINEER, REGISTER)
    assert response.status_code == 422
    body = response.json()
    assert (body["error"], body["allowed_roles"]) == ("RoleNotAllowed", ["service_clerk"])
    assert "register_repair" in body["allowed"]


def test_guard_rejection_is_422_with_the_guard_and_reason(client: TestClient) -> None:
    # repair_service's only guard can't be reached over HTTP (its payload fields are required, so an
    # empty one is a DataValidationError first); remote_service T4 needs a site address to escalate.
    ticket = client.post("/instances", headers=CLERK, json={"process": "remote_service", "data": {
        "customer_name": "Customer A", "request_channel": "phone", "problem_description": "Report module"}}).json()
    assert fire(client, ticket["id"], "assign_engineer", CLERK, {"engineer": "eng-li"}).status_code == 200
    response = fire(client, ticket["id"], "escalate_to_onsite", {"X-Roles": "service_engineer"},
                    {"reason": "needs a visit"})
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["error"], body["event"], body["state"]) == ("GuardRejected", "escalate_to_onsite", "in_service")
    assert body["guard"] == "site_address set" and body["reason"]
    assert "escalate_to_onsite" in body["allowed"]
    assert client.get(f"/instances/{ticket['id']}").json()["revision"] == 2


def break_table(db_path: Path, table: str) -> None:
    with sqlite3.connect(db_path) as conn:  # someone breaks the store under the running service
        conn.execute(f"ALTER TABLE {table} RENAME TO {table}_gone")


def test_broken_database_is_503(client: TestClient, db_path: Path) -> None:
    inst = start(client)
    break_table(db_path, "fe_history")
    response = client.get(f"/instances/{inst['id']}/history")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "StoreError" and "no such table" in body["message"]


def test_broken_database_on_the_hot_path_is_503(client: TestClient, db_path: Path) -> None:
    inst = start(client)
    break_table(db_path, "fe_instances")
    response = client.get(f"/instances/{inst['id']}")
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "StoreError"


def test_a_hook_that_raises_is_500_with_a_json_body(tmp_path: Path) -> None:
    hooks = HookRegistry("broken")

    @hooks.guard
    def has_engineer(ctx: GuardContext) -> bool:
        return True

    @hooks.action
    def stamp(ctx: ActionContext) -> None:
        raise RuntimeError("printer on fire")

    roles = {"clerk": {"X-Roles": "clerk"}, "engineer": {"X-Roles": "engineer"}, "manager": {"X-Roles": "manager"}}
    with TestClient(desk.create_app(f"sqlite:///{tmp_path / 'hooks.db'}", FIXTURES, hooks=hooks)) as c:
        tid = c.post("/instances", json={"process": "ticket", "data": {"customer": "A", "amount": "2000"}},
                     headers=roles["clerk"]).json()["id"]
        assert fire(c, tid, "assign", roles["clerk"], {"engineer": "e1"}).status_code == 200
        assert fire(c, tid, "resolve", roles["engineer"]).json()["to"] == "review"
        response = fire(c, tid, "approve", roles["manager"])
        assert response.status_code == 500
        assert response.json()["error"] == "HookError" and "printer on fire" in response.json()["message"]
        assert c.get(f"/instances/{tid}").json()["state"] == "review"


# -- the diagram ----------------------------------------------------------------------------------

def test_diagram_is_501_without_a_renderer(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = start(client)
    monkeypatch.setattr(desk, "diagram_renderer", lambda: None)
    response = client.get(f"/instances/{inst['id']}/diagram.svg")
    assert response.status_code == 501
    assert "flowengine.render" in response.json()["message"]


def test_diagram_is_the_renderers_svg(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = start(client)
    calls: list[tuple[Any, str, str]] = []

    def render_instance(engine: Any, instance_id: str, *, format: str) -> str:
        calls.append((engine, instance_id, format))
        return "<svg>state</svg>"

    monkeypatch.setattr(desk, "diagram_renderer", lambda: render_instance)
    response = client.get(f"/instances/{inst['id']}/diagram.svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.text == "<svg>state</svg>"
    assert calls == [(client.app.state.engine, inst["id"], "svg")]  # type: ignore[attr-defined]


def test_diagram_with_this_flowengine(client: TestClient) -> None:
    """Whichever this installation is: an SVG if flowengine.render exists, else the 501."""
    inst = start(client)
    response = client.get(f"/instances/{inst['id']}/diagram.svg")
    if desk.diagram_renderer() is None:
        assert response.status_code == 501
    else:
        assert response.status_code == 200, response.text
        assert "<svg" in response.text and "intake" in response.text


# -- a real server under a race -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "uvicorn.log").open("w+")
    env = {**os.environ, "FLOWENGINE_DB": f"sqlite:///{tmp_path / 'server.db'}",
           "FLOWENGINE_PROCESSES": str(PROCESSES)}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "examples.service_desk.app:app_from_env", "--factory",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"uvicorn exited with {proc.returncode}:\n{log.read()}")
            try:
                if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"uvicorn did not answer on {url} within 30 s:\n{log.read()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def race(server: str, instance_id: str, engineers: tuple[str, str]) -> dict[str, httpx.Response]:
    """Both clients fire register_repair at revision 1, released together by a barrier."""
    barrier = threading.Barrier(len(engineers))
    results: dict[str, httpx.Response] = {}

    def attempt(engineer: str) -> None:
        with httpx.Client(base_url=server, headers=CLERK, timeout=30) as http:
            barrier.wait()
            results[engineer] = http.post(f"/instances/{instance_id}/events/register_repair", json={
                "payload": {**REGISTER, "engineer": engineer}, "expected_revision": 1})

    threads = [threading.Thread(target=attempt, args=(name,)) for name in engineers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_clients_racing_on_one_revision_exactly_one_wins(server: str) -> None:
    for round_ in range(3):
        instance_id = f"RACE-{round_}"
        created = httpx.post(f"{server}/instances", headers=CLERK, timeout=10,
                             json={"process": "repair_service", "data": RP1_START, "id": instance_id})
        assert created.status_code == 201, created.text
        results = race(server, instance_id, ("eng-a", "eng-b"))
        assert sorted(r.status_code for r in results.values()) == [200, 409], {k: r.text for k, r in results.items()}
        winner = next(name for name, r in results.items() if r.status_code == 200)
        loser = next(r for r in results.values() if r.status_code == 409).json()
        assert (loser["error"], loser["expected_revision"], loser["actual_revision"]) == (
            "ConcurrencyConflict", 1, 2)
        inst = httpx.get(f"{server}/instances/{instance_id}", timeout=10).json()
        assert (inst["state"], inst["revision"], inst["data"]["engineer"]) == ("diagnosis", 2, winner)
        history = httpx.get(f"{server}/instances/{instance_id}/history", timeout=10).json()
        assert [h["event"] for h in history] == ["start", "register_repair"]
