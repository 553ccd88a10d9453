"""The query API over HTTP: FastAPI on uvicorn (several worker processes), reading the
current state the indexer materializes from ``master.<entity>`` (govsync.index).

A department logs in with HTTP Basic as its own principal, with the same password as its
Kafka login. Errors are RFC 9457 problem details (``application/problem+json``); the
OpenAPI document is at ``/openapi.json``. The topology in force is followed from
``govsync.topology`` and the data authority's decisions, so an approval (or a revocation)
takes effect within a second.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations at
# run time, and they name dependencies defined inside create_app.
import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
import uvicorn
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from govsync.api import audit, lookup
from govsync.api.quota import Quota
from govsync.api.recording import NotRecorded, QueryRecorder
from govsync.api.states import StateReads, StoreUnavailable
from govsync.index import queries, store
from streams.config import logs
from streams.config.settings import Settings
from streams.contract.records import Hop, QueryRecord
from streams.kafka import applied, credentials
from streams.model.standards import StandardViolation
from streams.model.topology import Entity, Subscription, Topology
from streams.transform.masking import department_key

log = logging.getLogger("govsync.api")

PROBLEM = "application/problem+json"
BATCH_LIMIT = 1000
MIN_VERSION_WAIT_S = 5.0  # how long a look-up with min_version waits for the store
LOGINS_REREAD_S = 5.0  # how often the logins file may be read again for a missing login
LOGINS_REMEMBERED = 10_000  # Authorization headers that logged in (a few per department)
KEEP_ALIVE_S = 75  # an idle keep-alive connection stays open this long (nginx's default)
BACKLOG = 4096  # connections waiting to be accepted: a burst of clients, not refused
BASIC = "log in with HTTP Basic as your department, with its Kafka password"
Fresh = Annotated[
    bool,
    Query(
        description="Wait (at most 2 s) until the index reflects everything the trail held "
        "when asked; without it the answer is immediate and index_lacking says how many "
        "trail records the index had yet to write."
    ),
]


class Problem(Exception):
    """An RFC 9457 problem: ``code`` names its type (``/problems/<code>``); ``extra``
    members ride along (``reason``, ``standard_code``, ``retry_after_s``)."""

    def __init__(self, status: int, code: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "type": f"/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def response(self, instance: str) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="govsync"'} if self.status == 401 else {}
        if "retry_after_s" in self.extra:
            headers["Retry-After"] = str(max(1, round(self.extra["retry_after_s"])))
        return JSONResponse(
            {**self.body(), "instance": instance},
            status_code=self.status,
            media_type=PROBLEM,
            headers=headers,
        )


class Directory:
    """What every request needs and rarely changes: the topology in force (followed),
    the departments' login digests (never their passwords) and masking keys."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.topology: Topology = applied.in_force(settings).topology
        self._digests: dict[str, dict[str, str]] = {}
        self._digests_read_at = -LOGINS_REREAD_S
        self._mask_keys: dict[str, bytes] = {}
        self._logins: dict[str, str] = {}
        self._stop = threading.Event()
        self._follower = threading.Thread(target=self._follow, name="topology", daemon=True)

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        for current in applied.follow(self._settings, self._stop):
            self.topology = current.topology
            log.info("now serving the topology in force as %s", current.version[:12])

    def login(self, authorization: str | None) -> str | None:
        """The department an ``Authorization: Basic`` header logs in, or None. A header
        that logged in once is remembered, so a keep-alive client is not re-checked on
        every request; a department no longer in the topology is refused all the same."""
        if not authorization:
            return None
        who = self._logins.get(authorization)
        if who is None:
            who = self._authenticate(authorization)
            if who is None:
                return None
            if len(self._logins) < LOGINS_REMEMBERED:
                self._logins[authorization] = who
        return who if who in self.topology.departments else None

    def _authenticate(self, authorization: str) -> str | None:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if username not in self.topology.departments:
            return None
        login = self._known_login(username)
        if login is None:
            return None
        digest = credentials.login_digest(password, bytes.fromhex(login["salt"]))
        return username if hmac.compare_digest(digest, login["sha256"]) else None

    def _known_login(self, department: str) -> dict[str, str] | None:
        """The department's login digest (credentials.write_logins); the file is read
        again when a department is missing from it (an apply added it)."""
        if department not in self._digests:
            now = time.monotonic()
            if now - self._digests_read_at > LOGINS_REREAD_S:
                path = credentials.logins_file(self._settings)
                self._digests = json.loads(path.read_text()) if path.exists() else {}
                self._digests_read_at = now
        return self._digests.get(department)

    def mask_key(self, department: str) -> bytes:
        key = self._mask_keys.get(department)
        if key is None:
            key = self._mask_keys[department] = department_key(
                self._settings.path("secrets"), department
            )
        return key


def ask(department: str, entity: str, key: str) -> QueryRecord:
    """The record of a look-up as asked; the handler completes it with the answer."""
    at_ms = int(datetime.now(UTC).timestamp() * 1000)
    return QueryRecord(
        department=department, entity=entity, entity_key=key, at_ms=at_ms, status=200
    )


def refused(asked: QueryRecord, problem: Problem) -> QueryRecord:
    """``asked`` completed with the problem answered instead of a state."""
    asked.status = problem.status
    asked.reason = problem.extra.get("reason") or problem.extra.get("standard_code") or problem.code
    asked.subscription = problem.extra.get("subscription", asked.subscription)
    return asked


def json_response(model: BaseModel) -> Response:
    """Serialized once by pydantic: FastAPI's validation of the return value would repeat it."""
    return Response(model.model_dump_json().encode(), media_type="application/json")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application (uvicorn calls this in each worker process)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        app.state.directory = Directory(settings)
        app.state.directory.start()
        app.state.quota = Quota(settings.api_rate / settings.api_workers)
        app.state.recorder = QueryRecorder(settings.bootstrap)
        reader = store.conninfo(settings, store.READER)
        app.state.states = StateReads(reader)
        await app.state.states.open()
        # For the rarer questions (history, min_version): plain queries in a thread.
        app.state.pool = ConnectionPool(
            reader, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True
        )
        app.state.freshness = audit.Freshness(settings)
        try:
            yield
        finally:
            app.state.directory.stop()
            await app.state.states.close()
            app.state.pool.close()
            app.state.recorder.close()
            app.state.freshness.close()

    app = FastAPI(
        title="govsync query API",
        version="1",
        summary="Current state of master data, within each department's approval (按需调用).",
        lifespan=lifespan,
    )
    generated = app.openapi

    def openapi() -> dict[str, Any]:
        """The generated document, with HTTP Basic declared for every route (checked in
        the handlers, not as a FastAPI dependency: that costs on every request)."""
        if app.openapi_schema is None:
            document = generated()
            schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["basic"] = {"type": "http", "scheme": "basic", "description": BASIC}
            document["security"] = [{"basic": []}]
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response(request.url.path)

    @app.exception_handler(HTTPException)
    async def http_problem(request: Request, exc: HTTPException) -> JSONResponse:
        title = "Not Found" if exc.status_code == 404 else "Error"
        return Problem(exc.status_code, "http", title, str(exc.detail)).response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return Problem(400, "invalid_request", "Invalid request", str(exc.errors())).response(
            request.url.path
        )

    def department(request: Request) -> str:
        """The logged-in department, within its rate; else 401 or 429."""
        directory: Directory = request.app.state.directory
        who = directory.login(request.headers.get("authorization"))
        if not who:
            raise Problem(401, "unauthenticated", "Unauthenticated", BASIC)
        wait = request.app.state.quota.take(who)
        if wait:
            raise Problem(
                429,
                "rate_limited",
                "Too many requests",
                f"{who} is over its {settings.api_rate:g} requests per second",
                retry_after_s=wait,
            )
        return who

    def entity_model(topology: Topology, entity: str) -> Entity:
        if entity not in topology.entities:
            raise Problem(404, "unknown_entity", "Unknown entity", f"no entity {entity!r}")
        return topology.entities[entity]

    def permitted(request: Request, entity: str, who: str) -> tuple[Subscription, Entity]:
        """The department's active subscription to ``entity`` and the entity's model."""
        topology: Topology = request.app.state.directory.topology
        model = entity_model(topology, entity)
        decided = lookup.subscription_for(topology, who, entity, datetime.now(UTC))
        if isinstance(decided, lookup.Refusal):
            raise Problem(
                403,
                f"not_permitted/{decided.reason}",
                "No active subscription",
                decided.detail,
                reason=decided.reason,
                subscription=decided.subscription,
            )
        return decided, model

    def standard(model: Entity, key: str) -> str:
        try:
            return lookup.standard_key(model, key)
        except StandardViolation as exc:
            raise Problem(
                400, "malformed_key", "Malformed key", str(exc), standard_code=exc.code, key=key
            ) from None

    async def stored(request: Request, entity: str, keys: list[str]) -> dict[str, Any]:
        try:
            return await request.app.state.states.get(entity, keys)
        except StoreUnavailable as exc:
            raise Problem(503, "store_unavailable", "Store unavailable", str(exc)) from None

    def reached(request: Request, entity: str, key: str, event_id: str) -> None:
        """Read-your-writes: wait until the store has applied ``event_id`` to ``key``."""
        pool: ConnectionPool = request.app.state.pool
        deadline = time.monotonic() + MIN_VERSION_WAIT_S
        with pool.connection() as conn:
            while not queries.applied(conn, entity, key, event_id):
                if time.monotonic() > deadline:
                    raise Problem(
                        504,
                        "version_not_reached",
                        "Version not reached",
                        f"the state of {entity} {key} did not reflect {event_id} within "
                        f"{MIN_VERSION_WAIT_S:g} s (unknown, or not yet applied)",
                    )
                time.sleep(0.05)

    async def record(request: Request, asked: list[QueryRecord]) -> None:
        """On the audit trail before the answer leaves (recording.py), or 503."""
        try:
            await request.app.state.recorder.record(asked)
        except NotRecorded as exc:
            raise Problem(503, "not_recorded", "Not recorded", str(exc)) from None

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        """For probes, and the benchmark's floor: the same server answering nothing else."""
        return Response(b'{"status":"ok"}', media_type="application/json")

    def authority(request: Request, asked: QueryRecord) -> None:
        """Only the data authority asks the audit questions; else 403, on the trail."""
        topology: Topology = request.app.state.directory.topology
        if asked.department != topology.authority:
            raise Problem(
                403,
                "not_permitted/not_the_authority",
                "Not the data authority",
                f"{asked.department} may not ask {asked.reason}: only the data authority "
                f"may ({topology.authority or 'the topology in force names none'})",
                reason="not_the_authority",
            )

    async def answer_audit(
        request: Request,
        question: str,
        key: str,
        ask_index: Callable[[psycopg.Connection], BaseModel],
    ) -> Response:
        """An audit question: checked, asked of the index in a thread, recorded (asked
        records ``reason`` the question, so who-received never counts it as a reception)."""
        asked = ask(department(request), "audit", key)
        asked.reason = question
        try:
            authority(request, asked)

            def answer() -> BaseModel:
                with request.app.state.pool.connection() as conn:
                    return ask_index(conn)

            try:
                answered = await asyncio.to_thread(answer)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                raise Problem(503, "store_unavailable", "Store unavailable", str(exc)) from None
        except Problem as problem:
            refused(asked, problem)
            asked.reason = f"{question}: {asked.reason}"
            await record(request, [asked])
            raise
        await record(request, [asked])
        return json_response(answered)

    @app.get(
        "/v1/audit/who-received/{key}",
        response_model=audit.WhoReceived,
        responses={401: {}, 403: {"description": "not the data authority"}, 503: {}},
        tags=["audit"],
    )
    async def who_received(request: Request, key: str, fresh: Fresh = False) -> Response:
        """Which departments received which fields of an entity, when, under which
        approval, and the look-ups they were answered (`govsync audit who-received`)."""
        freshness = request.app.state.freshness
        return await answer_audit(
            request,
            audit.WHO_RECEIVED,
            key,
            lambda conn: audit.received(conn, freshness, key, fresh),
        )

    @app.get(
        "/v1/audit/trace/{query}",
        response_model=audit.Traces,
        responses={401: {}, 403: {"description": "not the data authority"}, 503: {}},
        tags=["audit"],
    )
    async def trace(request: Request, query: str, fresh: Fresh = False) -> Response:
        """Where a change (an event_id) went, hop by hop, or every change of an entity key
        (`govsync trace`)."""
        freshness = request.app.state.freshness
        topology = request.app.state.directory.topology
        return await answer_audit(
            request,
            audit.TRACE,
            query,
            lambda conn: audit.traced(conn, freshness, query, topology, fresh),
        )

    @app.get(
        "/v1/{entity}/{key}",
        response_model=lookup.EntityView,
        responses={
            400: {"description": "a malformed key"},
            401: {"description": "not logged in"},
            403: {"description": "no active subscription"},
            404: {"description": "unknown entity or key"},
            429: {"description": "over the department's rate"},
            503: {"description": "the look-up could not be recorded, or the store is down"},
        },
    )
    async def current(
        request: Request,
        entity: str,
        key: str,
        min_version: Annotated[
            str | None,
            Query(description="An event_id: wait (at most 5 s) until the state reflects it."),
        ] = None,
    ) -> Response:
        """The entity's current state, projected and masked as the department's active
        subscription delivers it, with the version (event_id, source commit) it reflects."""
        who = department(request)
        asked = ask(who, entity, key)
        try:
            subscription, model = permitted(request, entity, who)
            asked.subscription = subscription.id
            found = asked.entity_key = standard(model, key)
            if min_version is not None:
                await asyncio.to_thread(reached, request, entity, found, min_version)
            state = (await stored(request, entity, [found])).get(found)
            if state is None:
                raise Problem(404, "unknown_key", "Unknown key", f"no {entity} {found}")
            mask_key = request.app.state.directory.mask_key(who)
            view = lookup.view(
                entity, model, found, lookup.StoredState(**state), subscription, mask_key
            )
            asked.event_id = view.version.event_id
        except Problem as problem:
            await record(request, [refused(asked, problem)])
            raise
        await record(request, [asked])
        return json_response(view)

    @app.post(
        "/v1/{entity}:batchGet",
        response_model=lookup.Batch,
        responses={400: {"description": "more than 1,000 keys"}, 403: {}, 404: {}},
    )
    async def batch_get(
        request: Request,
        entity: str,
        keys: Annotated[list[str], Body(embed=True, max_length=BATCH_LIMIT)],
    ) -> Response:
        """Up to 1,000 keys at once: one answer per key, in order, each the state or the
        problem (a malformed key, an unknown one) of that key alone."""
        who = department(request)
        asked = [ask(who, entity, key) for key in keys]
        try:
            subscription, model = permitted(request, entity, who)
        except Problem as problem:
            await record(request, [refused(a, problem) for a in asked])
            raise
        found: dict[str, str | Problem] = {}
        for one in asked:
            one.subscription = subscription.id
            try:
                found[one.entity_key] = standard(model, one.entity_key)
            except Problem as problem:
                found[one.entity_key] = problem
        states = await stored(request, entity, [k for k in found.values() if isinstance(k, str)])
        mask_key = request.app.state.directory.mask_key(who)
        items = []
        for one in asked:
            key = one.entity_key
            standard_key = found[key]
            if isinstance(standard_key, Problem):
                refused(one, standard_key)
                items.append(lookup.BatchItem(key=key, problem=standard_key.body()))
                continue
            one.entity_key = standard_key
            if standard_key not in states:
                unknown = Problem(404, "unknown_key", "Unknown key", f"no {entity} {standard_key}")
                refused(one, unknown)
                items.append(lookup.BatchItem(key=key, problem=unknown.body()))
                continue
            state = lookup.StoredState(**states[standard_key])
            view = lookup.view(entity, model, standard_key, state, subscription, mask_key)
            one.event_id = view.version.event_id
            items.append(lookup.BatchItem(key=key, found=view))
        await record(request, asked)
        return json_response(lookup.Batch(items=items))

    @app.get(
        "/v1/{entity}/{key}/history",
        response_model=list[lookup.Delivered],
        responses={400: {}, 404: {}},
    )
    async def history(request: Request, entity: str, key: str) -> list[lookup.Delivered]:
        """The department's own deliveries of this key, oldest first: which versions it
        was sent, when, and where on its delivery topic."""
        who = department(request)
        asked = ask(who, entity, key)
        try:
            model = entity_model(request.app.state.directory.topology, entity)
            found = asked.entity_key = standard(model, key)
            hops = await asyncio.to_thread(delivered, request, entity, found, who)
        except Problem as problem:
            await record(request, [refused(asked, problem)])
            raise
        asked.reason = "history"
        await record(request, [asked])
        return [lookup.Delivered.of(hop) for hop in hops]

    def delivered(request: Request, entity: str, key: str, who: str) -> list[Hop]:
        pool: ConnectionPool = request.app.state.pool
        with pool.connection() as conn:
            return queries.deliveries(conn, entity, key, who)

    return app


def serve(settings: Settings) -> None:
    """uvicorn with ``settings.api_workers`` processes, each creating the application
    (from the environment, hence the variables set here)."""
    logs.configure()
    os.environ["GOVSYNC_API_PORT"] = str(settings.api_port)
    os.environ["GOVSYNC_API_WORKERS"] = str(settings.api_workers)
    uvicorn.run(
        "govsync.api.app:create_app",
        factory=True,
        host=settings.listen_host,
        port=settings.api_port,
        workers=settings.api_workers,
        access_log=False,
        log_config=None,
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
