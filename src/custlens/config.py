"""The custlens.toml model. Every field has a default that works untouched."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from custlens.errors import ConfigError


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineConfig(_M):
    kind: Literal["duckdb", "spark"] = "duckdb"
    # Spark: master URL and where tables live (Parquet on shared storage).
    master: str = "local[2]"
    table_location: str = ""
    spark_conf: dict[str, str] = Field(default_factory=dict)
    # DuckDB tuning
    memory_limit: str = ""
    threads: int = 0


class OutlierRule(_M):
    method: Literal["iqr", "sigma", "both", "none"] = "iqr"
    iqr_k: float = 1.5
    sigma_k: float = 3.0
    action: Literal["flag", "quarantine"] = "flag"


class CleanConfig(_M):
    missing_threshold: float = 0.05  # below: impute mean/mode; at or above: mark unknown
    unknown_label: str = "未知"
    # table.column → outlier rule; columns not listed use the default for numeric measure columns
    outliers: dict[str, OutlierRule] = Field(default_factory=dict)
    outlier_columns: list[str] = Field(
        default_factory=lambda: ["orders.amount", "orders.discount", "events.duration_s", "order_items.quantity",
                                 "order_items.unit_price", "tickets.satisfaction", "channel_spend.cost"]
    )
    future_tolerance_hours: float = 24.0  # timestamps further in the future are impossible


class PrivacyConfig(_M):
    key_env: str = "CUSTLENS_KEY"  # env var holding a base64 key instead of the key file
    detect_by_content: bool = True
    sample_rows: int = 500
    min_match_share: float = 0.6  # share of non-empty sample values matching to call a column PII


class IdentityConfig(_M):
    link_on: list[str] = Field(default_factory=lambda: ["phone", "email", "id_number"])
    deny_list: list[str] = Field(default_factory=list)  # clear identifiers never used to link (hashed at use)
    max_cluster_size: int = 10


class ActivityConfig(_M):
    active_visits_per_week: float = 3.0
    silent_visits_per_month: float = 1.0
    churn_days: int = 90
    new_days: int = 30


class TagRule(_M):
    name: str
    group: Literal["basic", "behaviour", "value"] = "basic"
    expr: str  # SQL boolean or value expression over customer_profile columns
    doc: str = ""


class AlertRule(_M):
    name: str
    kind: Literal["kpi_drop", "segment_repurchase_drop", "risk_high"] = "kpi_drop"
    kpi: str = "gmv"
    threshold: float = 0.2
    segment: str = ""


class ModelsConfig(_M):
    # above this many training rows, supervised models fit on a stratified sample (documented in the run)
    max_fit_rows: int = 500_000
    score_batch_rows: int = 200_000  # scoring runs in batches of this many customers


class ReportConfig(_M):
    lang: Literal["zh", "en"] = "zh"
    questions: list[str] = Field(default_factory=lambda: ["raise_repurchase", "cut_high_value_churn"])
    currency: str = "CNY"
    min_group_size: int = 5


class SecurityConfig(_M):
    min_group_size: int = 5
    approval_ttl_hours: float = 4.0
    approvers_required: int = 1
    custom_roles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    subject_request_days: int = 30
    bulk_export_rows: int = 1000  # exports of more customer-level rows need a two-person approval
    event_retention_days: int = 0  # 0 = keep forever


class ServerConfig(_M):
    host: str = "127.0.0.1"
    port: int = 8765
    spool_limit_mb: int = 256
    dedup_window_days: int = 7
    # collected events are parsed and mapped in this many separate processes (0: in the writer thread)
    map_processes: int = Field(default=1, ge=0, le=1)


class Config(_M):
    name: str = "custlens"
    timezone: str = "Asia/Shanghai"
    lang: Literal["zh", "en"] = "zh"
    engine: EngineConfig = Field(default_factory=EngineConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    activity: ActivityConfig = Field(default_factory=ActivityConfig)
    tags: list[TagRule] = Field(default_factory=list)
    alerts: list[AlertRule] = Field(default_factory=list)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)


DEFAULT_TOML = """\
# custlens workspace configuration. Every setting has a working default; uncomment to change.
name = "custlens"
# Time zone that naive source timestamps are in.
timezone = "Asia/Shanghai"
# Language for reports and messages: "zh" or "en".
lang = "zh"

[engine]
# "duckdb" (embedded, the file warehouse.duckdb here) or "spark" (see docs/deploy-spark.md).
kind = "duckdb"
# master = "local[2]"          # Spark master URL
# table_location = ""          # Spark: folder/URI where tables live as Parquet
# memory_limit = "8GB"         # DuckDB memory limit (empty = half of RAM; DuckDB's own default is 80%)

[clean]
# Columns missing less than this share are imputed (mean/mode); more are marked unknown.
missing_threshold = 0.05
unknown_label = "未知"
# Numeric columns checked for outliers (box-plot IQR by default; per-column rules below).
# outlier_columns = ["orders.amount", "events.duration_s"]
# [clean.outliers."orders.amount"]
# method = "both"               # iqr | sigma | both | none
# action = "flag"               # flag | quarantine

[privacy]
# Environment variable that may hold the workspace key (base64) instead of keys/custlens.key.
key_env = "CUSTLENS_KEY"
detect_by_content = true

[identity]
link_on = ["phone", "email", "id_number"]
# Shared identifiers never used to link customers (front-desk phones, test accounts).
deny_list = []
max_cluster_size = 10

[activity]
active_visits_per_week = 3.0
silent_visits_per_month = 1.0
churn_days = 90
new_days = 30

[models]
# Above this many training rows, supervised models fit on a stratified sample; scoring runs in batches.
max_fit_rows = 500000
score_batch_rows = 200000

[report]
lang = "zh"
questions = ["raise_repurchase", "cut_high_value_churn"]

[security]
min_group_size = 5
approval_ttl_hours = 4.0

[server]
host = "127.0.0.1"
port = 8765
# map_processes = 1            # collected events are mapped in a separate process (0: in the server process)
"""


def load_config(path: Path) -> Config:
    """Read custlens.toml; a syntax or value error names the file, the setting and the fix."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Config()
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"custlens.toml is not valid TOML: {e}", where=str(path),
                          fix="fix the syntax, or delete the file to get the defaults back") from None
    try:
        return Config.model_validate(data)
    except PydanticValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"invalid setting {loc}: {first['msg']}", where=str(path),
                          fix="correct the value or remove the line to use the default") from None
