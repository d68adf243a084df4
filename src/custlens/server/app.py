"""The FastAPI app factory: the server process is the workspace's single DuckDB writer.

Routers: the event collection API (collect.py) always; custlens.server.api and custlens.server.pages
(each exposing `router`) when present. Shared state for routers: app.state.ws (the open Workspace),
app.state.collector (spool, writer, write keys) and app.state.db_lock (hold it around ws.duck use).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from custlens.server.collect import Collector
from custlens.server.collect import router as collect_router

log = logging.getLogger("custlens.server")

OPTIONAL_ROUTERS = ("custlens.server.api", "custlens.server.pages")


def include_routers(app: FastAPI) -> list[str]:
    """Mount the `router` of each optional server module that exists; returns the modules mounted."""
    mounted = []
    for mod in OPTIONAL_ROUTERS:
        try:
            m = importlib.import_module(mod)
            app.include_router(m.router)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):
                continue
            _broken(app, mod, e)
            continue
        except Exception as e:  # noqa: BLE001 — a broken optional router must not stop event collection
            _broken(app, mod, e)
            continue
        mounted.append(mod)
    return mounted


def _broken(app: FastAPI, mod: str, e: Exception) -> None:
    log.error("server: routes of %s are unavailable: %r", mod, e)
    broken = getattr(app.state, "broken_routers", {})
    broken[mod] = repr(e)
    app.state.broken_routers = broken


def create_app(ws_path: str | Path | None = None, *, writer: bool = True) -> FastAPI:
    """The custlens web app for the workspace at ws_path; it opens the warehouse when it starts.

    writer=False keeps the warehouse writer stopped (events are spooled only; for maintenance and tests).
    """
    from custlens.workspace import open_workspace  # noqa: PLC0415

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ws = open_workspace(ws_path)
        col = Collector(ws, writer=writer)
        col.start()
        app.state.ws = ws
        app.state.collector = col
        app.state.db_lock = col.db_lock
        try:
            yield
        finally:
            col.stop()
            ws.close()

    app = FastAPI(title="custlens", version="0.1.0", lifespan=lifespan)
    app.include_router(collect_router)
    include_routers(app)
    return app
