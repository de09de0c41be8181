"""Every scorecards model, importable as `scorecards.models.X` (Django finds them here; tables and app label
are those of the single models module they came from)."""

from scorecards.models.kpis import (
    STATUS_RANK,
    STATUS_SEVERITY,
    Direction,
    Kpi,
    KpiGroupObjectPermission,
    KpiSchedule,
    KpiUserObjectPermission,
    OwnershipTransfer,
    Status,
    StatusChange,
    SurgeSignal,
)
from scorecards.models.manual import ManualKpi, ManualValue, Period
from scorecards.models.measurements import (
    EPOCH,
    Measurement,
    MeasurementManager,
    MeasurementRevision,
    NonFinite,
)
from scorecards.models.okrs import CheckIn, KeyResult, Objective, Scorecard
from scorecards.models.sources import DataSource, DataSourceRun, ImportJob

__all__ = [
    "EPOCH",
    "STATUS_RANK",
    "STATUS_SEVERITY",
    "CheckIn",
    "DataSource",
    "DataSourceRun",
    "Direction",
    "ImportJob",
    "KeyResult",
    "Kpi",
    "KpiGroupObjectPermission",
    "KpiSchedule",
    "KpiUserObjectPermission",
    "ManualKpi",
    "ManualValue",
    "Measurement",
    "MeasurementManager",
    "MeasurementRevision",
    "NonFinite",
    "Objective",
    "OwnershipTransfer",
    "Period",
    "Scorecard",
    "Status",
    "StatusChange",
    "SurgeSignal",
]
