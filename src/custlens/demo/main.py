"""`custlens demo`: the main job — init a workspace, generate data, ingest, clean, protect, report."""

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from custlens.cli_common import Format
from custlens.i18n import register as register_messages
from custlens.i18n import t

register_messages({
    "demo.step.init": {"zh": "创建工作区", "en": "Creating the workspace"},
    "demo.step.generate": {"zh": "生成 {n} 位客户的多源演示数据", "en": "Generating multi-source data for {n} customers"},
    "demo.step.ingest": {"zh": "导入 {file} → {table}", "en": "Ingesting {file} → {table}"},
    "demo.step.clean": {"zh": "清洗数据并度量质量", "en": "Cleaning and measuring quality"},
    "demo.step.profile": {"zh": "构建客户 360 画像", "en": "Building the customer 360 profile"},
    "demo.step.models": {"zh": "拟合模型（CLV、流失、风险）并写入画像", "en": "Fitting models (CLV, churn, risk) into the profile"},
    "demo.step.report": {"zh": "生成报告", "en": "Writing the report"},
    "demo.done": {"zh": "完成，用时 {s:.1f} 秒。", "en": "Done in {s:.1f} s."},
    "demo.where.ws": {"zh": "工作区", "en": "Workspace"},
    "demo.where.data": {"zh": "源数据", "en": "Source data"},
    "demo.where.report": {"zh": "报告", "en": "Report"},
    "demo.where.warehouse": {"zh": "数据仓库（DuckDB）", "en": "Warehouse (DuckDB)"},
})


@dataclass
class DemoResult:
    workspace: Path
    data_dir: Path
    reports: list[Path] = field(default_factory=list)
    loads: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"workspace": str(self.workspace), "data_dir": str(self.data_dir),
                "warehouse": str(self.workspace / "warehouse.duckdb"),
                "reports": [str(p) for p in self.reports], "loads": self.loads,
                "timings_s": {k: round(v, 2) for k, v in self.timings.items()}}


def build_workspace(path: str | Path = "custlens-demo", *, customers: int = 50_000, seed: int = 42, lang: str = "zh",
                    log: Any = None, timings: dict[str, float] | None = None) -> DemoResult:
    """Init, generate, ingest, clean, protect, stitch, profile and tag — everything but the report."""
    from custlens.demo import generate  # noqa: PLC0415
    from custlens.ingest.loader import ingest  # noqa: PLC0415
    from custlens.workspace import init  # noqa: PLC0415

    say = log or (lambda msg: None)
    timings = timings if timings is not None else {}

    def lap(name: str, t0: float) -> float:
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - t0
        return now

    t0 = time.perf_counter()
    root = Path(path).resolve()
    say(t("demo.step.init", lang))
    ws = init(root)
    t0 = lap("init", t0)

    data_dir = root / "data"
    say(t("demo.step.generate", lang, n=f"{customers:,}"))
    gen = generate(data_dir, customers=customers, seed=seed, lang=lang, fmt="csv")
    t0 = lap("generate", t0)

    result = DemoResult(workspace=root, data_dir=data_dir, timings=timings)
    for entry in gen.manifest:
        f = data_dir / entry["file"]
        say(t("demo.step.ingest", lang, file=entry["file"], table=entry["table"]))
        for rep in ingest(ws, [f], entry["table"]):
            result.loads.append(rep.to_dict() if hasattr(rep, "to_dict") else dict(rep.__dict__))
    t0 = lap("ingest", t0)

    from custlens.clean.pipeline import clean  # noqa: PLC0415
    from custlens.profile.build import build_profile  # noqa: PLC0415
    from custlens.profile.tags import build_tags  # noqa: PLC0415

    say(t("demo.step.clean", lang))
    clean(ws)
    ws.optimize()  # customers' rows stored together: fast customer-360 lookups
    t0 = lap("clean", t0)
    say(t("demo.step.profile", lang))
    build_profile(ws)
    build_tags(ws)
    t0 = lap("profile", t0)
    _score_models(ws, say, lang, timings)
    t0 = lap("models", t0)
    ws.close()
    return result


def model_steps(ws: Any) -> list[tuple[str, Any]]:
    """The demo's model runs in order, as (name, thunk): per-customer scores into the profile, then alerts."""
    from custlens.models.alerts import run_alerts  # noqa: PLC0415
    from custlens.models.anomalies import anomalies  # noqa: PLC0415
    from custlens.models.churn import churn  # noqa: PLC0415
    from custlens.models.clusters import clusters  # noqa: PLC0415
    from custlens.models.clv import clv, score_clv  # noqa: PLC0415
    from custlens.models.recommend import recommend  # noqa: PLC0415
    from custlens.models.text import analyze_text  # noqa: PLC0415
    from custlens.profile.build import write_scores  # noqa: PLC0415

    return [
        ("clv", lambda: (write_scores(ws, score_clv(ws)), clv(ws, holdout_weeks=13))),
        ("churn", lambda: churn(ws)),
        ("anomalies", lambda: anomalies(ws)),
        ("clusters", lambda: clusters(ws, k_range=(3, 6))),
        ("text", lambda: analyze_text(ws, "tickets", write=True)),
        ("recommend", lambda: recommend(ws, write=True, evaluate=True)),
        ("alerts", lambda: run_alerts(ws)),
    ]


def _score_models(ws: Any, say: Any, lang: str, timings: dict[str, float] | None = None) -> None:
    """Fit the models that write per-customer scores into the profile, and run the alert rules."""
    say(t("demo.step.models", lang))
    for name, fn in model_steps(ws):
        t0 = time.perf_counter()
        fn()
        if timings is not None:
            timings[f"model.{name}"] = time.perf_counter() - t0


def run_demo(path: str | Path = "custlens-demo", *, customers: int = 50_000, seed: int = 42, lang: str = "zh",
             log: Any = None) -> DemoResult:
    """Run the whole flow on generated data; re-running reuses the workspace (the ledger skips loaded files)."""
    from custlens.workspace import open_workspace  # noqa: PLC0415

    say = log or (lambda msg: None)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    warming = _warm_kernels()
    try:
        result = build_workspace(path, customers=customers, seed=seed, lang=lang, log=log, timings=timings)
    finally:
        _reap(warming)
    t0 = time.perf_counter()
    say(t("demo.step.report", lang))
    with open_workspace(result.workspace) as ws:
        result.reports = _write_reports(ws, lang)
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    return result


def _warm_kernels() -> subprocess.Popen | None:
    """Compile the funnel's numba kernels in a background process while the data is generated and loaded: the
    first compile on a machine takes ~5 s, which the report's funnel would otherwise wait for (numba caches
    the code beside the module, so later runs load it). None when the process cannot start."""
    try:
        return subprocess.Popen([sys.executable, "-c", "from custlens.analytics._funnel_fast import warm; warm()"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def _reap(proc: subprocess.Popen | None) -> None:
    """Wait for the warm-up (it has long finished when the data is loaded); a failed one only costs the report
    its own compile."""
    if proc is None:
        return
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _write_reports(ws: Any, lang: str) -> list[Path]:
    from custlens.report.build import write_report  # noqa: PLC0415

    return list(write_report(ws, lang=lang, formats=("html", "pdf", "xlsx")).files)


def register(app: typer.Typer) -> None:
    from custlens.cli import emit, err  # noqa: PLC0415

    @app.command()
    def demo(
        path: str = typer.Argument("custlens-demo", help="Workspace folder to create."),
        customers: int = typer.Option(50_000, "--customers", "-n", help="Number of customers to generate."),
        seed: int = typer.Option(42, help="Random seed (same seed, same data)."),
        lang: str = typer.Option("zh", help="Language of data and report: zh or en."),
        fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
    ) -> None:
        """The main job: init, generate data, ingest, clean, protect, build the profile and write the report."""
        res = run_demo(path, customers=customers, seed=seed, lang=lang, log=lambda m: err.print(f"• {m}"))
        if fmt is Format.json:
            emit(res.to_dict(), fmt)
            return
        err.print(t("demo.done", lang, s=res.timings["total"]))
        emit({t("demo.where.ws", lang): str(res.workspace),
              t("demo.where.warehouse", lang): str(res.workspace / "warehouse.duckdb"),
              t("demo.where.data", lang): str(res.data_dir),
              t("demo.where.report", lang): "\n".join(str(p) for p in res.reports)}, fmt)
