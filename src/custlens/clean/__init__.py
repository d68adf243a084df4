"""custlens.clean: missing values, outliers and data-quality metrics on the canonical tables."""

from custlens.clean.missing import MissingDecision, handle_missing
from custlens.clean.outliers import OutlierResult, handle_outliers
from custlens.clean.pipeline import CleaningReport, clean
from custlens.clean.quality import (
           QualityComparison,
           QualityRun,
           compare_runs,
           latest_run,
           list_runs,
           load_run,
           measure_quality,
)

__all__ = ["CleaningReport", "MissingDecision", "OutlierResult", "QualityComparison", "QualityRun", "clean",
           "compare_runs", "handle_missing", "handle_outliers", "latest_run", "list_runs", "load_run",
           "measure_quality"]
