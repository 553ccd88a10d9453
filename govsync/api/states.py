"""Current states read in batches: the look-ups that arrive while the store's connections
are busy wait together and go to PostgreSQL as one query per entity (``entity_key =
ANY(...)``). Under load one query answers tens of look-ups, so the cost per look-up falls
as the load rises; when idle, a look-up goes alone and at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg

from govsync.index import queries

log = logging.getLogger("govsync.api")

Waiting = tuple[str, list[str], "asyncio.Future[dict[str, Any]]"]


class StoreUnavailable(RuntimeError):
    """The state store did not answer (the look-up gets 503)."""


class StateReads:
    def __init__(self, conninfo: str, connections: int = 2) -> None:
        self._conninfo = conninfo
        self._connections = connections
        self._idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        self._waiting: list[Waiting] = []
        self._arrived = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        for _ in range(self._connections):
            self._idle.put_nowait(await self._connect())
        self._dispatcher = asyncio.create_task(self._dispatch())

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        for task in list(self._tasks):
            task.cancel()
        while not self._idle.empty():
            await self._idle.get_nowait().close()

    async def get(self, entity: str, keys: list[str]) -> dict[str, Any]:
        """Key -> stored state (``queries.entity_states``); unknown keys are absent."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((entity, keys, future))
        self._arrived.set()
        return await future

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    async def _dispatch(self) -> None:
        while True:
            await self._arrived.wait()
            connection = await self._idle.get()  # meanwhile, more look-ups join the batch
            waiting, self._waiting = self._waiting, []
            self._arrived.clear()
            task = asyncio.create_task(self._read(connection, waiting))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _read(self, connection: psycopg.AsyncConnection[Any], waiting: list[Waiting]) -> None:
        wanted: dict[str, set[str]] = {}
        for entity, keys, _ in waiting:
            wanted.setdefault(entity, set()).update(keys)
        try:
            found = {}
            for entity, keys in wanted.items():
                cursor = await connection.execute(queries.ENTITY_STATES, (entity, list(keys)))
                found[entity] = queries.entity_state_rows(await cursor.fetchall())
        except psycopg.Error as exc:
            log.warning("state store: %s", exc)
            for *_, future in waiting:
                if not future.done():
                    future.set_exception(StoreUnavailable(f"the state store did not answer: {exc}"))
            connection = await self._replace(connection)
        else:
            for entity, keys, future in waiting:
                if not future.done():
                    states = found[entity]
                    future.set_result({k: states[k] for k in keys if k in states})
        finally:
            self._idle.put_nowait(connection)

    async def _replace(self, broken: psycopg.AsyncConnection[Any]) -> psycopg.AsyncConnection[Any]:
        """A new connection for a lost one; the lost one again if none can be made (the
        next batch tries again)."""
        if not broken.closed and not broken.broken:  # a failed query, not a lost line
            return broken
        try:
            return await self._connect()
        except psycopg.Error as exc:
            log.warning("state store: cannot reconnect: %s", exc)
            return broken
