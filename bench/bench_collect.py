"""Event collection throughput: a real `custlens serve` on loopback under a bounded load generator.

Cases: single-event /v1/track calls and 100-event /v1/batch calls, each with two clients:

- `wrk` (C, with a Lua POST script) when installed (Debian: `apt-get install wrk`); it needs little CPU, so
  the numbers are close to what the server does when the clients are on other machines;
- a Python httpx client (threads), which shares the same cores with the server — a pessimistic view.

Reported per case: acknowledged events/s (client view), end-to-end events/s (until the last acknowledged
event is in the warehouse), request latency p50/p99, and loss = acknowledged - stored (must be 0). Every
case uses its own write key and message ids, so the stored count per key is exact. Load is bounded in
time (the seconds of the size) and count (wrk stops a connection after its share of requests).

    python bench/bench_collect.py S            # both clients (wrk only if installed)
    python bench/bench_collect.py S wrk        # one client: wrk | httpx
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

SIZES = {  # single calls, batch calls of 100, httpx threads single/batch, wrk connections single/batch, wrk s, cap s
    "S": (3_000, 300, 8, 4, 16, 8, 8, 60),
    "M": (10_000, 1_000, 8, 4, 32, 8, 15, 120),
    "L": (30_000, 3_000, 12, 6, 64, 16, 30, 300),
}

EVENT = ('{{"type":"track","event":"view","userId":"u{u}","messageId":"{mid}","timestamp":"2024-05-01T10:00:00Z",'
         '"properties":{{"product_id":"p{p}","duration":{d}}},"context":{{"ip":"10.0.{a}.{b}","platform":"web"}}}}')

# wrk script: unique message ids per run/thread/request; counts 200s and the "accepted" numbers; stops each
# thread after CL_MAX requests (count bound) — the -d duration is the time bound.
LUA = r"""
local run = os.getenv("CL_RUN")
local per = tonumber(os.getenv("CL_PER"))
local maxreq = tonumber(os.getenv("CL_MAX"))
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  ok, bad, acc, done_ = 0, 0, 0, 0
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("CL_KEY")
end
local function ev(n, i)
  return string.format('{"type":"track","event":"view","userId":"u%d","messageId":"%s-%d-%d-%d",' ..
    '"timestamp":"2024-05-01T10:00:00Z","properties":{"product_id":"p%d","duration":%d},' ..
    '"context":{"ip":"10.0.%d.%d","platform":"web"}}', (n * per + i) % 5000, run, tid, n, i, i % 300, i % 60,
    n % 250, i % 250)
end
function request()
  counter = counter + 1
  if per == 1 then
    return wrk.format("POST", "/v1/track", nil, ev(counter, 0))
  end
  local evs = {}
  for i = 0, per - 1 do evs[#evs + 1] = ev(counter, i) end
  return wrk.format("POST", "/v1/batch", nil, '{"batch":[' .. table.concat(evs, ",") .. ']}')
end
function response(status, headers, body)
  done_ = done_ + 1
  if status == 200 then
    ok = ok + 1
    acc = acc + (tonumber(string.match(body, '"accepted":%s*(%d+)')) or 0)
  else
    bad = bad + 1
  end
  if done_ >= maxreq then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local o, b, a = 0, 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad"); a = a + t:get("acc") end
  io.write(string.format("CLRESULT ok=%d bad=%d accepted=%d p50_us=%d p99_us=%d dur_us=%d errors=%d\n", o, b, a,
    latency:percentile(50), latency:percentile(99), summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(root: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = open(root / "server.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "custlens", "-w", str(root), "serve", "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "CUSTLENS_HOME": str(root / ".home")})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((root / "server.log").read_text())
        try:
            if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _load_httpx(url: str, key: str, *, calls: int, per_call: int, threads: int, cap_s: float, tag: str
                ) -> tuple[int, list[float], float]:
    """Send `calls` requests of `per_call` events from `threads` threads (stops at cap_s) → (acked, latencies, s)."""
    lock = threading.Lock()
    acked = [0]
    lat: list[float] = []
    counter = iter(range(calls))
    t0 = time.perf_counter()
    deadline = t0 + cap_s

    def worker(tid: int) -> None:
        with httpx.Client(auth=(key, ""), timeout=30, limits=httpx.Limits(max_connections=2)) as c:
            while time.perf_counter() < deadline:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                evs = [EVENT.format(u=(n * per_call + i) % 5000, mid=f"{tag}-{n}-{i}", p=i % 300, d=i % 60,
                                    a=n % 250, b=i % 250) for i in range(per_call)]
                body = evs[0] if per_call == 1 else '{"batch":[' + ",".join(evs) + "]}"
                s = time.perf_counter()
                r = c.post(url + ("/v1/track" if per_call == 1 else "/v1/batch"), content=body.encode(),
                           headers={"content-type": "application/json"})
                e = time.perf_counter() - s
                with lock:
                    lat.append(e)
                    if r.status_code == 200:
                        acked[0] += r.json()["accepted"]

    ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return acked[0], lat, time.perf_counter() - t0


def _load_wrk(url: str, key: str, *, per_call: int, connections: int, seconds: int, max_requests: int, script: Path,
              tag: str) -> tuple[int, float, float, float, int]:
    """wrk with the Lua script → (acked events, p50 s, p99 s, seconds, non-200 responses + socket errors)."""
    threads = 2
    env = {**os.environ, "CL_RUN": tag, "CL_PER": str(per_call), "CL_KEY": key,
           "CL_MAX": str(max(1, max_requests // threads))}
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
                          "-s", str(script), url], capture_output=True, text=True, env=env, timeout=seconds + 120)
    m = re.search(r"CLRESULT ok=(\d+) bad=(\d+) accepted=(\d+) p50_us=(\d+) p99_us=(\d+) dur_us=(\d+) errors=(\d+)",
                  out.stdout)
    if not m:
        raise RuntimeError("wrk failed: " + out.stdout + out.stderr)
    ok, bad, acc, p50, p99, dur, errors = (int(x) for x in m.groups())
    return acc, p50 / 1e6, p99 / 1e6, dur / 1e6, bad + errors


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def _drain(url: str, key: str, case: str, cap: float) -> dict:
    t_end = time.perf_counter()
    while True:  # until the writer has drained everything acknowledged
        st = httpx.get(url + "/v1/stats", auth=(key, ""), timeout=10).json()
        if st["keys"].get(case, {}).get("in_spool", 0) == 0 or time.perf_counter() - t_end > cap:
            return st
        time.sleep(0.05)


def run(size: str = "S", clients: tuple[str, ...] | None = None) -> list[dict]:
    """bench/run.py contract: one row per case and client."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import custlens
    from custlens.server.writer import create_write_key

    single_calls, batch_calls, th_single, th_batch, c_single, c_batch, wrk_s, cap = SIZES[size]
    have_wrk = shutil.which("wrk") is not None
    if clients is None:
        clients = ("wrk", "httpx") if have_wrk else ("httpx",)
    elif "wrk" in clients and not have_wrk:
        print("bench_collect: wrk is not installed (apt-get install wrk); using httpx", file=sys.stderr)
        clients = tuple(c for c in clients if c != "wrk") or ("httpx",)
    # each case twice, side by side: events mapped in the mapper process (the default) and in the server's
    # own writer thread (server.map_processes = 0, the layout before the mapper process)
    plan = [(f"{case}-{cl}-m{mp}", case, cl, mp) for mp in (1, 0) for cl in clients for case in ("single", "batch100")]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "ws"
        ws = custlens.init(root)
        keys = {name: create_write_key(ws.duck, name.replace("-", "_")) for name, _, _, _ in plan}
        ws.close()
        script = Path(d) / "collect.lua"
        script.write_text(LUA, encoding="utf-8")
        toml = root / "custlens.toml"
        base_toml = toml.read_text(encoding="utf-8")
        for mp in (1, 0):
            toml.write_text(base_toml.replace("[server]\n", f"[server]\nmap_processes = {mp}\n"), encoding="utf-8")
            proc, url = _start(root)
            try:
                for name, case, client, m in plan:
                    if m != mp:
                        continue
                    key, kname = keys[name], name.replace("-", "_")
                    per = 1 if case == "single" else 100
                    tag = f"{kname}-{uuid.uuid4().hex[:6]}"
                    if client == "wrk":
                        conns = c_single if per == 1 else c_batch
                        calls = single_calls * 10 if per == 1 else batch_calls * 10
                        acked, p50, p99, secs, errors = _load_wrk(url, key, per_call=per, connections=conns,
                                                                  seconds=wrk_s, max_requests=calls, script=script,
                                                                  tag=tag)
                        conc = f"wrk 2 threads, {conns} connections"
                    else:
                        th = th_single if per == 1 else th_batch
                        acked, lat, secs = _load_httpx(url, key, calls=single_calls if per == 1 else batch_calls,
                                                       per_call=per, threads=th, cap_s=cap, tag=tag)
                        p50, p99, errors = _pct(lat, 0.5), _pct(lat, 0.99), 0
                        conc = f"httpx {th} threads"
                    t_end = time.perf_counter()
                    st = _drain(url, key, kname, cap)
                    e2e = secs + (time.perf_counter() - t_end)
                    k = st["keys"].get(kname, {})
                    impl = f"custlens serve ({client})" + ("" if mp else ", mapping in the server process")
                    rows.append({"suite": "collect", "case": case, "impl": impl,
                                 "seconds": e2e, "rows": acked, "events_per_s_acked": acked / secs,
                                 "events_per_s_stored": acked / e2e, "p50_ms": p50 * 1000, "p99_ms": p99 * 1000,
                                 "stored": k.get("stored"), "client": conc, "errors": errors, "key": kname})
            finally:
                _stop(proc)
        ws = custlens.open(root)
        try:
            for r in rows:
                n = ws.duck.execute("SELECT count(*) FROM events WHERE _source = ?", ["collect:" + r["key"]]
                                    ).fetchone()[0]
                r["loss"] = r["rows"] - n
                extra = f" (+{n - r['rows']} stored without an ack)" if n > r["rows"] else ""
                r["note"] = (f"{r['events_per_s_acked']:,.0f} ev/s acked, {r['events_per_s_stored']:,.0f} ev/s stored; "
                             f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; loss {max(r['loss'], 0)}"
                             f"{extra}; "
                             f"non-200/errors {r['errors']}; {r['client']} on the same host")
        finally:
            ws.close()
    return rows


if __name__ == "__main__":
    import json

    args = sys.argv[1:]
    out = run(args[0] if args else "S", tuple(args[1:]) or None)
    for r in out:
        print(f"{r['case']:9s} {r['impl']:24s} {r['note']}", file=sys.stderr)
    print(json.dumps(out, indent=2, default=str))
