"""Errors a user can cause: each says what was wrong, where, and what to do."""

from __future__ import annotations

from custlens.i18n import register, t


class CustlensError(Exception):
    """Base class for user-facing errors; the CLI prints the message without a traceback."""

    exit_code = 2

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.what]
        if self.where:
            parts.append(f"where: {self.where}")
        if self.fix:
            parts.append(f"what to do: {self.fix}")
        return "\n".join(parts)

    def to_dict(self) -> dict[str, str | None]:
        return {"error": type(self).__name__, "what": self.what, "where": self.where, "fix": self.fix}


class WorkspaceError(CustlensError):
    """Workspace missing, malformed or locked."""


class ConfigError(CustlensError):
    """custlens.toml is invalid."""


class InputError(CustlensError):
    """A source file or argument cannot be read or understood."""


class MappingError(InputError):
    """Source columns cannot be mapped onto the canonical model."""


class ValidationError(InputError):
    """A value or identifier is not acceptable (also used against injection)."""


class KeyMaterialError(CustlensError):
    """The key needed to pseudonymize or decrypt is missing or wrong."""


class PermissionDenied(CustlensError):
    """The acting user's role does not allow this."""

    exit_code = 3


class ApprovalRequired(PermissionDenied):
    """The action needs an approved two-person request."""


class NotFound(CustlensError):
    """A named object (customer, table, report, user) does not exist."""


class AuditError(CustlensError):
    """The audit log cannot be written or failed verification; the action is refused."""


class DataError(CustlensError):
    """The warehouse lacks the data an analysis needs."""


class ResourceError(CustlensError):
    """The engine ran out of a machine resource (memory) for this work."""


_OOM = {
    "errors.oom": {"zh": "数据引擎内存不足：{detail}", "en": "the data engine ran out of memory: {detail}"},
    "errors.oom_fix": {"zh": "在 custlens.toml 的 [engine] 中调高 memory_limit（留空 = 一半内存），或调低 threads，或缩小日期范围后重试",
                       "en": "raise memory_limit under [engine] in custlens.toml (empty = half of RAM), or lower threads, "
                             "or narrow the date range, then run it again"},
}


register(_OOM)


def out_of_memory(e: Exception, lang: str | None = None) -> ResourceError:
    """DuckDB's out-of-memory error as a message that says which setting to change (CLI and API)."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ResourceError(t("errors.oom", lang, detail=first), where="[engine] memory_limit",
                         fix=t("errors.oom_fix", lang))
