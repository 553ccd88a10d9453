"""The query API over HTTP: FastAPI on uvicorn (several worker processes), reading the
current state the indexer materializes from ``master.<entity>`` (govsync.index).

A department logs in with HTTP Basic as its own principal, with the same password as its
Kafka login. Errors are RFC 9457 problem details (``application/problem+json``); the
OpenAPI document is at ``/openapi.json``. The topology in force is followed from
``govsync.topology``, so an approval applied (or revoked) takes effect within a second.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations at
# run time, and they name dependencies defined inside create_app.
import hmac
import logging
import os
import threading
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import uvicorn
from fastapi import Body, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from psycopg_pool import ConnectionPool
from starlette.exceptions import HTTPException

from govsync.api import lookup
from govsync.api.quota import Quota
from govsync.index import queries, store
from streams.config import logs
from streams.config.settings import Settings
from streams.kafka import applied, credentials
from streams.model.standards import StandardViolation
from streams.model.topology import Entity, Subscription, Topology
from streams.transform.masking import department_key

log = logging.getLogger("govsync.api")

PROBLEM = "application/problem+json"
BATCH_LIMIT = 1000


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
    the departments' passwords and masking keys (read once)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.topology: Topology = applied.in_force(settings).topology
        self._passwords: dict[str, bytes] = {}
        self._mask_keys: dict[str, bytes] = {}
        self._stop = threading.Event()
        self._follower = threading.Thread(target=self._follow, name="topology", daemon=True)

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        for current in applied.follow(self._settings.bootstrap, self._stop):
            self.topology = current.topology()
            log.info("now serving the topology applied at %s", current.applied_at)

    def authenticate(self, username: str, password: str) -> str | None:
        """The department logging in, or None."""
        if username not in self.topology.departments:
            return None
        wanted = self._passwords.get(username)
        if wanted is None:
            wanted = self._passwords[username] = credentials.password(
                self._settings, username
            ).encode()
        return username if hmac.compare_digest(password.encode(), wanted) else None

    def mask_key(self, department: str) -> bytes:
        key = self._mask_keys.get(department)
        if key is None:
            key = self._mask_keys[department] = department_key(
                self._settings.path("secrets"), department
            )
        return key


basic = HTTPBasic(auto_error=False, realm="govsync")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application (uvicorn calls this in each worker process)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        app.state.directory = Directory(settings)
        app.state.directory.start()
        app.state.quota = Quota(settings.api_rate / settings.api_workers)
        app.state.pool = ConnectionPool(
            store.conninfo(settings, store.READER),
            min_size=1,
            max_size=8,
            kwargs={"autocommit": True},
            open=True,
        )
        try:
            yield
        finally:
            app.state.directory.stop()
            app.state.pool.close()

    app = FastAPI(
        title="govsync query API",
        version="1",
        summary="Current state of master data, within each department's approval (按需调用).",
        lifespan=lifespan,
    )

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

    def department(
        request: Request, login: Annotated[HTTPBasicCredentials | None, Depends(basic)]
    ) -> str:
        directory: Directory = request.app.state.directory
        who = login and directory.authenticate(login.username, login.password)
        if not who:
            raise Problem(
                401,
                "unauthenticated",
                "Unauthenticated",
                "log in with HTTP Basic as your department, with its Kafka password",
            )
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

    def permitted(request: Request, entity: str, who: str) -> tuple[Subscription, Entity]:
        """The department's active subscription to ``entity`` and the entity's model."""
        topology: Topology = request.app.state.directory.topology
        if entity not in topology.entities:
            raise Problem(404, "unknown_entity", "Unknown entity", f"no entity {entity!r}")
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
        return decided, topology.entities[entity]

    def standard(model: Entity, key: str) -> str:
        try:
            return lookup.standard_key(model, key)
        except StandardViolation as exc:
            raise Problem(
                400, "malformed_key", "Malformed key", str(exc), standard_code=exc.code, key=key
            ) from None

    @app.get(
        "/v1/{entity}/{key}",
        response_model=lookup.EntityView,
        responses={
            400: {"description": "a malformed key"},
            401: {"description": "not logged in"},
            403: {"description": "no active subscription"},
            404: {"description": "unknown entity or key"},
        },
    )
    def current(
        request: Request,
        entity: str,
        key: str,
        who: Annotated[str, Depends(department)],
    ) -> lookup.EntityView:
        """The entity's current state, projected and masked as the department's active
        subscription delivers it, with the version (event_id, source commit) it reflects."""
        subscription, model = permitted(request, entity, who)
        found = standard(model, key)
        pool: ConnectionPool = request.app.state.pool
        with pool.connection() as conn:
            stored = queries.entity_states(conn, entity, [found]).get(found)
        if stored is None:
            raise Problem(404, "unknown_key", "Unknown key", f"no {entity} {found}")
        mask_key = request.app.state.directory.mask_key(who)
        return lookup.view(
            entity, model, found, lookup.StoredState(**stored), subscription, mask_key
        )

    @app.post(
        "/v1/{entity}:batchGet",
        response_model=lookup.Batch,
        responses={400: {"description": "more than 1,000 keys"}, 403: {}, 404: {}},
    )
    def batch_get(
        request: Request,
        entity: str,
        who: Annotated[str, Depends(department)],
        keys: Annotated[list[str], Body(embed=True, max_length=BATCH_LIMIT)],
    ) -> lookup.Batch:
        """Up to 1,000 keys at once: one answer per key, in order, each the state or the
        problem (a malformed key, an unknown one) of that key alone."""
        subscription, model = permitted(request, entity, who)
        standards: dict[str, str | Problem] = {}
        for key in keys:
            try:
                standards[key] = standard(model, key)
            except Problem as problem:
                standards[key] = problem
        wanted = [s for s in standards.values() if isinstance(s, str)]
        pool: ConnectionPool = request.app.state.pool
        with pool.connection() as conn:
            stored = queries.entity_states(conn, entity, wanted)
        mask_key = request.app.state.directory.mask_key(who)
        items = []
        for key in keys:
            found = standards[key]
            if isinstance(found, Problem):
                items.append(lookup.BatchItem(key=key, problem=found.body()))
            elif found not in stored:
                unknown = Problem(404, "unknown_key", "Unknown key", f"no {entity} {found}")
                items.append(lookup.BatchItem(key=key, problem=unknown.body()))
            else:
                view = lookup.view(
                    entity,
                    model,
                    found,
                    lookup.StoredState(**stored[found]),
                    subscription,
                    mask_key,
                )
                items.append(lookup.BatchItem(key=key, found=view))
        return lookup.Batch(items=items)

    @app.get(
        "/v1/{entity}/{key}/history",
        response_model=list[lookup.Delivered],
        responses={400: {}, 404: {}},
    )
    def history(
        request: Request,
        entity: str,
        key: str,
        who: Annotated[str, Depends(department)],
    ) -> list[lookup.Delivered]:
        """The department's own deliveries of this key, oldest first: which versions it
        was sent, when, and where on its delivery topic."""
        topology: Topology = request.app.state.directory.topology
        if entity not in topology.entities:
            raise Problem(404, "unknown_entity", "Unknown entity", f"no entity {entity!r}")
        found = standard(topology.entities[entity], key)
        pool: ConnectionPool = request.app.state.pool
        with pool.connection() as conn:
            hops = queries.deliveries(conn, entity, found, who)
        return [lookup.Delivered.of(hop) for hop in hops]

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
        host=settings.host,
        port=settings.api_port,
        workers=settings.api_workers,
        access_log=False,
        log_config=None,
    )
