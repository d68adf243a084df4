"""Canonical table schemas. docs/data-model.md is the prose reference for these definitions.

Types are logical: string, int, float, money (decimal amount), bool, date, timestamp, json.
A PII column (pii set) is never stored in clear: the warehouse holds `<col>` as the masked display
form, `<col>_pseudo` (keyed HMAC-SHA256, hex) and `<col>_enc` (AES-GCM, base64).
"""

from __future__ import annotations

from dataclasses import dataclass

from custlens.errors import ValidationError

LOGICAL_TYPES = ("string", "int", "float", "money", "bool", "date", "timestamp", "json")

# Ibis/DuckDB type for each logical type (Spark maps the same through Ibis).
IBIS_TYPES = {
    "string": "string",
    "int": "int64",
    "float": "float64",
    "money": "float64",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "json": "string",
}

# Bookkeeping columns every canonical table carries.
META_COLUMNS = {
    "_source": "string",  # source file name (no path)
    "_row": "int64",  # 1-based data row number in the source
    "_load_id": "string",  # ledger load id
    "_imputed": "string",  # comma-separated columns whose value was imputed by cleaning
    "_flags": "string",  # comma-separated quality flags (e.g. outlier_iqr:amount)
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    doc: str
    required: bool = False
    pii: str | None = None  # kind of personal data: phone, email, id_number, name, address, bank_card, ip
    enum: tuple[str, ...] | None = None
    categorical: bool = False  # impute with the mode / "unknown"
    nonneg: bool = False  # negative values are impossible (quarantined)

    def __post_init__(self) -> None:
        if self.type not in LOGICAL_TYPES:
            raise ValueError(f"unknown logical type {self.type}")


@dataclass(frozen=True)
class TableSchema:
    name: str
    doc: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    time_column: str | None = None  # the column that places a row in time (archive, ranges)
    update_column: str | None = None  # latest record by this column wins on key duplicates
    extras: bool = True  # unknown source columns are kept as extra attribute columns
    derived: bool = False

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise ValidationError(
            f"table {self.name!r} has no canonical column {name!r}",
            fix=f"use one of: {', '.join(self.names)}",
        )

    def has(self, name: str) -> bool:
        return any(c.name == name for c in self.columns)

    @property
    def pii_columns(self) -> list[Column]:
        return [c for c in self.columns if c.pii]

    def storage_columns(self) -> dict[str, str]:
        """Physical columns (name → ibis type) in the warehouse, PII expanded, meta appended."""
        out: dict[str, str] = {}
        for c in self.columns:
            out[c.name] = IBIS_TYPES[c.type]
            if c.pii:
                out[f"{c.name}_pseudo"] = "string"
                out[f"{c.name}_enc"] = "string"
        out.update(META_COLUMNS)
        return out


C = Column

CUSTOMERS = TableSchema(
    "customers",
    "One row per customer (CRM). Latest record by update_time wins; older ones go to customers_history.",
    key=("user_id",),
    time_column="register_time",
    update_column="update_time",
    columns=(
        C("user_id", "string", "Customer identifier in the source system", required=True),
        C("name", "string", "Personal name (PII; display form 张*)", pii="name"),
        C("gender", "string", "male / female / unknown", enum=("male", "female", "unknown"), categorical=True),
        C("birth_date", "date", "Date of birth"),
        C("phone", "string", "Mobile phone (PII; display 138****1234)", pii="phone"),
        C("email", "string", "Email (PII; display a***@example.com)", pii="email"),
        C("id_number", "string", "Resident ID number (PII; display 4403**********1234)", pii="id_number"),
        C("address", "string", "Detailed address (PII; display province/city only)", pii="address"),
        C("province", "string", "Province, standardized (广东省 → 广东)", categorical=True),
        C("city", "string", "City, standardized (深圳市 → 深圳)", categorical=True),
        C("register_time", "timestamp", "Registration time"),
        C("member_level", "string", "Membership level, standardized", categorical=True),
        C("acquisition_channel", "string", "Channel the customer was acquired through", categorical=True),
        C("update_time", "timestamp", "When the source last updated this record"),
    ),
)

EVENTS = TableSchema(
    "events",
    "Web/app behaviour events.",
    key=("event_id",),
    time_column="event_time",
    columns=(
        C("event_id", "string", "Event identifier (generated from content when the source has none)", required=True),
        C("user_id", "string", "Known customer id, if identified"),
        C("anonymous_id", "string", "Device/cookie id before identification"),
        C("event", "string", "Event name: view, click, add_to_cart, order, login, search …", required=True),
        C("event_time", "timestamp", "When it happened", required=True),
        C("session_id", "string", "Session identifier"),
        C("product_id", "string", "Product involved"),
        C("duration_s", "float", "Seconds spent (page/stay duration)", nonneg=True),
        C("channel", "string", "Traffic channel or campaign source", categorical=True),
        C("platform", "string", "APP / web / mini-program", categorical=True),
        C("ip", "string", "Client IP address (PII)", pii="ip"),
        C("properties", "json", "Other event properties as JSON"),
    ),
)

ORDERS = TableSchema(
    "orders",
    "Orders. amount is the paid amount in the order currency.",
    key=("order_id",),
    time_column="order_time",
    columns=(
        C("order_id", "string", "Order identifier", required=True),
        C("user_id", "string", "Customer", required=True),
        C("order_time", "timestamp", "When the order was placed", required=True),
        C("amount", "money", "Paid amount", required=True),
        C("status", "string", "paid / refunded / cancelled", enum=("paid", "refunded", "cancelled"), categorical=True),
        C("channel", "string", "Sales channel", categorical=True),
        C("payment_method", "string", "Payment method", categorical=True),
        C("discount", "money", "Discount applied", nonneg=True),
        C("platform", "string", "APP / web / mini-program", categorical=True),
    ),
)

ORDER_ITEMS = TableSchema(
    "order_items",
    "Order lines.",
    key=("order_id", "line"),
    columns=(
        C("order_id", "string", "Order", required=True),
        C("line", "int", "Line number within the order", required=True),
        C("product_id", "string", "Product", required=True),
        C("category", "string", "Product category", categorical=True),
        C("quantity", "int", "Units", nonneg=True),
        C("unit_price", "money", "Price per unit", nonneg=True),
    ),
)

PRODUCTS = TableSchema(
    "products",
    "Product catalog.",
    key=("product_id",),
    columns=(
        C("product_id", "string", "Product identifier", required=True),
        C("name", "string", "Product name"),
        C("category", "string", "Category", categorical=True),
        C("price", "money", "List price", nonneg=True),
    ),
)

TICKETS = TableSchema(
    "tickets",
    "Customer-service tickets.",
    key=("ticket_id",),
    time_column="created_time",
    columns=(
        C("ticket_id", "string", "Ticket identifier", required=True),
        C("user_id", "string", "Customer"),
        C("created_time", "timestamp", "Opened at", required=True),
        C("first_response_time", "timestamp", "First agent response"),
        C("resolved_time", "timestamp", "Resolved at"),
        C("category", "string", "Issue category", categorical=True),
        C("channel", "string", "phone / online chat / email …", categorical=True),
        C("satisfaction", "float", "Satisfaction score (1–5)"),
        C("text", "string", "Ticket text"),
    ),
)

FEEDBACK = TableSchema(
    "feedback",
    "Surveys, reviews, social posts.",
    key=("feedback_id",),
    time_column="time",
    columns=(
        C("feedback_id", "string", "Feedback identifier", required=True),
        C("user_id", "string", "Customer"),
        C("time", "timestamp", "When given", required=True),
        C("source", "string", "survey / review / social", categorical=True),
        C("product_id", "string", "Product reviewed"),
        C("rating", "float", "Rating (1–5, or NPS 0–10 for surveys)"),
        C("text", "string", "Free text"),
    ),
)

CHANNEL_SPEND = TableSchema(
    "channel_spend",
    "Marketing spend and traffic by day, channel and campaign.",
    key=("date", "channel", "campaign"),
    time_column="date",
    columns=(
        C("date", "date", "Day", required=True),
        C("channel", "string", "Channel", required=True),
        C("campaign", "string", "Campaign (or '-' for none)"),
        C("impressions", "int", "Impressions", nonneg=True),
        C("uv", "int", "Unique visitors", nonneg=True),
        C("clicks", "int", "Clicks", nonneg=True),
        C("cost", "money", "Cost", nonneg=True),
    ),
)

ACTIONS = TableSchema(
    "actions",
    "Strategy actions to track (recorded with `custlens action add`).",
    key=("action_id",),
    extras=False,
    columns=(
        C("action_id", "string", "Action identifier", required=True),
        C("name", "string", "What was done", required=True),
        C("segment", "string", "Targeted segment (rule or name)"),
        C("start", "date", "Start"),
        C("end", "date", "End"),
        C("kpi", "string", "KPI to watch"),
        C("target", "float", "Target value or uplift"),
        C("owner", "string", "Owner department"),
        C("created_at", "timestamp", "Recorded at"),
    ),
)

TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in (CUSTOMERS, EVENTS, ORDERS, ORDER_ITEMS, PRODUCTS, TICKETS, FEEDBACK, CHANNEL_SPEND, ACTIONS)
}

# Derived / system tables (created by their modules; listed so names are reserved).
SYSTEM_TABLES = (
    "customers_history",
    "customer_profile",
    "customer_tags",
    "identity_map",
    "quality_runs",
    "ingest_ledger",
    "quarantine",
    "alerts",
    "audit_log",
    "users",
    "approvals",
    "reports",
    "tombstones",
    "model_runs",
)


def get_table(name: str) -> TableSchema:
    """The schema of a canonical table, or a clear error listing the valid names."""
    try:
        return TABLES[name]
    except KeyError:
        raise ValidationError(
            f"unknown table {name!r}",
            fix=f"use one of: {', '.join(TABLES)}",
        ) from None
