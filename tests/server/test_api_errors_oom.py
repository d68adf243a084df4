"""An out-of-memory error in an API route is a JSON 503 that names the setting, not a bare 500."""

from __future__ import annotations

import asyncio

import duckdb
import httpx
from fastapi import APIRouter, FastAPI

from custlens.server.deps import JSONErrorRoute


def _oom() -> None:  # a real DuckDB out-of-memory error: a distinct over 3M strings in 8 MB, spilling off
    con = duckdb.connect()
    con.execute("SET memory_limit='8MB'")
    con.execute("SET temp_directory=''")
    con.execute("SET threads=1")
    con.execute("SELECT count(*) FROM (SELECT DISTINCT (i * 7919)::VARCHAR FROM range(3000000) t(i))").fetchall()


def test_out_of_memory_becomes_a_503_with_the_fix() -> None:
    router = APIRouter(route_class=JSONErrorRoute)
    router.add_api_route("/boom", lambda: _oom(), methods=["GET"])
    app = FastAPI()
    app.include_router(router)

    async def get(lang: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://custlens") as c:
            return await c.get("/boom", params={"lang": lang})

    r = asyncio.run(get("zh"))
    en = asyncio.run(get("en")).json()
    assert r.status_code == 503
    body = r.json()
    assert body["error"] == "ResourceError" and body["where"] == "[engine] memory_limit"
    assert "内存不足" in body["what"] and "Out of Memory Error" in body["what"] and "memory_limit" in body["fix"]
    assert en["what"].startswith("the data engine ran out of memory") and "raise memory_limit" in en["fix"]
