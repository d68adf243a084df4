"""Subprocess for fault tests: do real custlens work, optionally SIGKILL this process when a function runs.

usage: _child.py KILL ACTION WORKSPACE [ARGS...]
  KILL    "-" (no kill) or "package.module:function" (killed when it is called) or "…:function@after"
          (killed right after it returns). The kill is a real `kill -9` of this process.
  ACTION  profile | report | ingest FILE TABLE | hold SECONDS (opens the workspace, prints "ready", sleeps)
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import time


def arm(spec: str) -> None:
    if spec == "-":
        return
    after = spec.endswith("@after")
    spec = spec.removesuffix("@after")
    mod_name, attr = spec.split(":")
    mod = importlib.import_module(mod_name)
    real = getattr(mod, attr)

    @functools.wraps(real)
    def killer(*a, **kw):
        if not after:
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*a, **kw)
        os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(mod, attr, killer)


def main() -> None:
    kill, action, root, *args = sys.argv[1:]
    import custlens  # noqa: F401
    from custlens.errors import CustlensError
    from custlens.workspace import open_workspace

    arm(kill)
    try:
        ws = open_workspace(root)
        if action == "profile":
            from custlens.profile.build import build_profile
            from custlens.profile.tags import build_tags

            build_profile(ws)
            build_tags(ws)
        elif action == "report":
            from custlens.report.build import write_report

            write_report(ws, lang="en", formats=("html", "xlsx"))
        elif action == "ingest":
            from custlens.ingest.loader import ingest

            for r in ingest(ws, [args[0]], args[1]):
                print(r.rows_read, r.loaded, r.duplicates, r.quarantined)
        elif action == "hold":
            ws.duck.execute("SELECT 1")
            print("ready", flush=True)
            time.sleep(float(args[0]))
        ws.close()
    except CustlensError as e:
        print(e.message, file=sys.stderr)
        sys.exit(e.exit_code)
    print("done")


if __name__ == "__main__":
    main()
