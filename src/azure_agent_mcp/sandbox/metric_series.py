"""The sandbox's Azure Monitor platform metrics: which metrics each resource type has, and their values.

Values are a pure function of (resource id, metric, minute): the same question always gets the
same answer, whichever day it is asked, so tests can compute what to expect with ``minute_value``.
Each resource gets its own level from a hash of its id; a few seeded resources are given a story
an agent can find (``vm-worker-01``'s CPU is pegged, ``app-orders-prod`` answers some 5xx).

A bucket longer than a minute aggregates its minutes as Azure does: ``average``, ``minimum`` and
``maximum`` over the one-minute values, ``total`` their sum, ``count`` how many there are.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

AGGREGATIONS = ("Average", "Count", "Maximum", "Minimum", "Total")
STANDARD_GRAINS = ("PT1M", "PT5M", "PT15M", "PT30M", "PT1H", "PT6H", "PT12H", "P1D")
RETENTION = "P93D"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    display: str
    description: str
    unit: str
    primary: str  # the primary aggregation type
    category: str
    metric_class: str
    base: float  # the level around which the one-minute values move
    swing: float  # the daily swing, as a fraction of the level
    integral: bool = False  # counts: whole numbers
    grains: tuple[str, ...] = STANDARD_GRAINS
    dimensions: tuple[str, ...] = ()


METRICS: dict[str, tuple[MetricSpec, ...]] = {
    "microsoft.compute/virtualmachines": (
        MetricSpec("Percentage CPU", "Percentage CPU",
                   "The percentage of allocated compute units that are currently in use by the Virtual Machine(s)",
                   "Percent", "Average", "Capacity", "Saturation", 18.0, 0.35),
        MetricSpec("Network In Total", "Network In Total",
                   "The number of bytes received on all network interfaces by the Virtual Machine(s) "
                   "(Incoming Traffic)", "Bytes", "Total", "Network", "Transactions", 2_400_000.0, 0.5, True),
        MetricSpec("Available Memory Bytes", "Available Memory Bytes",
                   "Amount of physical memory, in bytes, immediately available for allocation to a process or for "
                   "system use in the Virtual Machine", "Bytes", "Average", "Memory", "Saturation",
                   3_200_000_000.0, 0.1, True),
    ),
    "microsoft.web/sites": (
        MetricSpec("Requests", "Requests", "The total number of requests regardless of their resulting HTTP "
                   "status code.", "Count", "Total", "Traffic", "Transactions", 120.0, 0.6, True,
                   dimensions=("Instance",)),
        MetricSpec("Http5xx", "Http Server Errors", "The count of requests resulting in an HTTP status code >= 500 "
                   "but < 600.", "Count", "Total", "Errors", "Errors", 0.4, 0.8, True, dimensions=("Instance",)),
        MetricSpec("HttpResponseTime", "Response Time", "The time taken for the app to serve requests, in seconds.",
                   "Seconds", "Average", "Latency", "Latency", 0.21, 0.3, dimensions=("Instance",)),
        MetricSpec("AverageResponseTime", "Average Response Time (deprecated)",
                   "The average time taken for the app to serve requests, in seconds.", "Seconds", "Average",
                   "Latency", "Latency", 0.21, 0.3, dimensions=("Instance",)),
    ),
    "microsoft.storage/storageaccounts": (
        MetricSpec("Transactions", "Transactions", "The number of requests made to a storage service or the "
                   "specified API operation.", "Count", "Total", "Transaction", "Transactions", 40.0, 0.5, True,
                   dimensions=("ResponseType", "GeoType", "ApiName", "Authentication")),
        MetricSpec("UsedCapacity", "Used capacity", "The amount of storage used by the storage account. For standard "
                   "storage accounts, it's the sum of capacity used by blob, table, file, and queue.", "Bytes",
                   "Average", "Capacity", "Saturation", 52_000_000_000.0, 0.0, True, grains=("PT1H",)),
    ),
}

# Seeded resources with a story, by (resource name, metric): (level, daily swing) instead of the hashed ones.
_STORIES = {
    ("vm-worker-01", "Percentage CPU"): (96.0, 0.02),
    ("app-orders-prod", "Http5xx"): (9.0, 0.5),
    ("app-orders-prod", "HttpResponseTime"): (1.8, 0.2),
    ("app-orders-prod", "AverageResponseTime"): (1.8, 0.2),
}


def metrics_for(resource_type: str) -> tuple[MetricSpec, ...]:
    return METRICS.get(resource_type.lower(), ())


def _unit_hash(*parts: str) -> float:
    """A number in [0, 1) fixed by the parts."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def shape(resource_id: str, spec: MetricSpec) -> tuple[float, float]:
    """(level, daily swing) of the metric on this resource."""
    name = resource_id.rstrip("/").rsplit("/", 1)[-1].lower()
    story = _STORIES.get((name, spec.name))
    if story is not None:
        return story
    return spec.base * (0.5 + _unit_hash(resource_id.lower(), spec.name, "level")), spec.swing


def minute_value(resource_id: str, spec: MetricSpec, minute: int) -> float:
    """The metric's one-minute value at ``minute`` (whole minutes since the Unix epoch)."""
    base, swing = shape(resource_id, spec)
    phase = _unit_hash(resource_id.lower(), spec.name, "phase") * 2 * math.pi
    daily = math.sin(2 * math.pi * (minute % 1440) / 1440 + phase)
    jitter = _unit_hash(resource_id.lower(), spec.name, str(minute)) - 0.5
    value = base * (1 + swing * daily + 0.1 * jitter)
    if spec.unit == "Percent":
        value = min(max(value, 0.0), 100.0)
    value = max(value, 0.0)
    return float(round(value)) if spec.integral else round(value, 4)


def bucket(resource_id: str, spec: MetricSpec, start_minute: int, minutes: int) -> dict[str, float]:
    """All five aggregations of the minutes ``[start_minute, start_minute + minutes)``."""
    values = [minute_value(resource_id, spec, start_minute + i) for i in range(minutes)]
    total = sum(values)
    return {
        "average": round(total / len(values), 4),
        "minimum": min(values),
        "maximum": max(values),
        "total": round(total, 4),
        "count": float(len(values)),
    }
