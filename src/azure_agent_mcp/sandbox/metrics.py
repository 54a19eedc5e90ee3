"""Azure Monitor metrics under a resource: ``.../providers/Microsoft.Insights/metricDefinitions`` and ``/metrics``.

``GET {resourceId}/providers/Microsoft.Insights/metrics?timespan=<start>/<end>&interval=PT1M
&metricnames=A,B&aggregation=Average,Maximum&api-version=2018-01-01`` answers the ``Response``
shape azure-mgmt-monitor parses (cost, timespan, interval, namespace, resourceregion, value[] of
metrics with one timeseries of data points); the values come from ``metric_series``.

Defaults as the service has them: the last hour, ``PT1M``, the type's first metric, its primary
aggregation. A bad timespan, interval, metric name or aggregation is the service's ``400
BadRequest`` naming it (the flat ``{"code", "message"}`` shape). The sandbox bounds one answer to
``MAX_POINTS`` data points per series (choose a longer interval for a longer timespan).

RBAC: ``Microsoft.Insights/metrics/read`` and ``Microsoft.Insights/metricDefinitions/read`` at the
resource. A resource that does not exist is ARM's ``404 ResourceNotFound``.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from azure_agent_mcp.sandbox import metric_series as series
from azure_agent_mcp.sandbox.activity_room import MonitorError, bad_request, parse_time, unsupported_version
from azure_agent_mcp.sandbox.arm import ArmFailure
from azure_agent_mcp.sandbox.protocol import json_response

if TYPE_CHECKING:
    from azure_agent_mcp.sandbox.access import Principal
    from azure_agent_mcp.sandbox.arm import ArmPlane
    from azure_agent_mcp.sandbox.armpath import ArmTarget
    from azure_agent_mcp.sandbox.protocol import Request, Response

API_VERSIONS = ("2018-01-01", "2021-05-01", "2023-10-01", "2024-02-01")
METRICS_READ = "Microsoft.Insights/metrics/read"
DEFINITIONS_READ = "Microsoft.Insights/metricDefinitions/read"
MAX_POINTS = 1440
RETENTION_DAYS = 93
_DURATION = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$", re.IGNORECASE)


def parse_duration(text: str, what: str) -> datetime.timedelta:
    """An ISO 8601 duration in weeks, days, hours, minutes and seconds (PT1M, PT1H, P1D, P1DT12H...)."""
    match = _DURATION.match(text.strip())
    if not match or not any(match.groups()) or text.strip().upper().endswith("T"):
        raise bad_request(f"The {what} '{text[:100]}' is not an ISO 8601 duration such as PT1M, PT1H or P1D.")
    weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return datetime.timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def parse_timespan(text: str | None, now: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
    """``start/end`` or ``start/duration`` (ISO 8601 intervals); the last hour when absent."""
    if text is None or not text.strip():
        return now - datetime.timedelta(hours=1), now
    first, slash, second = text.strip().partition("/")
    if not slash:
        raise bad_request(f"The timespan '{text[:100]}' is not in the format 'startDateTime_ISO/endDateTime_ISO' "
                          "(for example 2026-01-21T20:00:00Z/2026-01-21T21:00:00Z).")
    start = parse_time(first, "timespan start")
    end = start + parse_duration(second, "timespan duration") if second.upper().startswith("P") else \
        parse_time(second, "timespan end")
    if end <= start:
        raise bad_request(f"The timespan '{text[:100]}' ends before it starts: the end must be later than the start.")
    return start, end


def _floor(moment: datetime.datetime, grain: datetime.timedelta) -> datetime.datetime:
    epoch = int(moment.timestamp())
    step = int(grain.total_seconds())
    return datetime.datetime.fromtimestamp(epoch - epoch % step, datetime.timezone.utc)


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _grain_text(grain: datetime.timedelta) -> str:
    seconds = int(grain.total_seconds())
    if seconds % 86400 == 0:
        return f"P{seconds // 86400}D"
    if seconds % 3600 == 0:
        return f"PT{seconds // 3600}H"
    return f"PT{seconds // 60}M"


class MetricsRoom:
    """Metric definitions and values of one resource (an ``ArmRoom``)."""

    def __init__(self, plane: ArmPlane, clock: Callable[[], float] = time.time) -> None:
        self.plane = plane
        self.clock = clock  # "now": where the default hour ends, and which buckets have happened yet

    def serves(self, method: str, lowered_parts: list[str]) -> bool:
        return (method == "GET" and len(lowered_parts) >= 11 and lowered_parts[0] == "subscriptions"
                and lowered_parts[-3:-1] == ["providers", "microsoft.insights"]
                and lowered_parts[-1] in ("metrics", "metricdefinitions"))

    def handle(self, request: Request, parts: list[str], target: ArmTarget, principal: Principal) -> Response:
        resource_id = "/" + "/".join(parts[:-3])
        definitions = parts[-1].lower() == "metricdefinitions"
        api_version = request.query_ci("api-version") or ""
        if api_version not in API_VERSIONS:
            raise unsupported_version(api_version, "metricDefinitions" if definitions else "metrics", API_VERSIONS)
        self.plane.require(principal, DEFINITIONS_READ if definitions else METRICS_READ, resource_id)
        resource = self._resource(resource_id)
        try:
            if definitions:
                return json_response(200, {"value": [self._definition(resource, s)
                                                     for s in series.metrics_for(resource["type"])]})
            return json_response(200, self._values(request, resource))
        except MonitorError as exc:
            return exc.response()

    def _resource(self, resource_id: str) -> dict[str, Any]:
        world = self.plane.state.world
        key = resource_id.lower()
        found = world.resources.get(key) or world.children.get(key)
        if found is None:
            raise ArmFailure(404, "ResourceNotFound", f"The Resource '{resource_id}' was not found. For more "
                                                      "details please go to https://aka.ms/ARMResourceNotFoundFix")
        return found

    @staticmethod
    def _definition(resource: dict[str, Any], spec: series.MetricSpec) -> dict[str, Any]:
        rid = resource["id"]
        return {
            "id": f"{rid}/providers/microsoft.insights/metricdefinitions/{spec.name}",
            "resourceId": rid,
            "namespace": resource["type"],
            "name": {"value": spec.name, "localizedValue": spec.display},
            "displayDescription": spec.description,
            "category": spec.category,
            "metricClass": spec.metric_class,
            "isDimensionRequired": False,
            "unit": spec.unit,
            "primaryAggregationType": spec.primary,
            "supportedAggregationTypes": list(series.AGGREGATIONS),
            "metricAvailabilities": [{"timeGrain": g, "retention": series.RETENTION} for g in spec.grains],
            "dimensions": [{"value": d, "localizedValue": d} for d in spec.dimensions],
        }

    def _values(self, request: Request, resource: dict[str, Any]) -> dict[str, Any]:
        now = datetime.datetime.fromtimestamp(self.clock(), datetime.timezone.utc)
        start, end = parse_timespan(request.query_ci("timespan"), now)
        grain_text = (request.query_ci("interval") or "PT1M").strip()
        grain = parse_duration(grain_text, "interval")
        if grain < datetime.timedelta(minutes=1) or grain.total_seconds() % 60:
            raise bad_request(f"The interval '{grain_text}' is not a time grain: use whole minutes of at least PT1M "
                              f"({', '.join(series.STANDARD_GRAINS)}).")
        specs = self._chosen(resource, request.query_ci("metricnames"))
        aggregations = self._aggregations(request.query_ci("aggregation"))
        for spec in specs:
            if _grain_text(grain) not in spec.grains:
                raise bad_request(f"The interval '{grain_text}' is not supported by metric '{spec.name}': its time "
                                  f"grains are {', '.join(spec.grains)}.")
        first = _floor(start, grain)
        points = int((end - first) / grain) + (1 if (end - first) % grain else 0)
        if points > MAX_POINTS:
            raise bad_request(f"The timespan and interval ask for {points} data points per series; the limit is "
                              f"{MAX_POINTS}. Choose a longer interval or a shorter timespan.")
        oldest = now - datetime.timedelta(days=RETENTION_DAYS)
        minutes = int(grain.total_seconds() // 60)
        rid = resource["id"]
        value = []
        for spec in specs:
            data = []
            for i in range(points):
                stamp = first + i * grain
                point: dict[str, Any] = {"timeStamp": _iso(stamp)}
                if oldest <= stamp <= now:
                    numbers = series.bucket(rid, spec, int(stamp.timestamp()) // 60, minutes)
                    point.update({a.lower(): numbers[a.lower()] for a in (aggregations or [spec.primary])})
                data.append(point)
            value.append({
                "id": f"{rid}/providers/Microsoft.Insights/metrics/{spec.name}",
                "type": "Microsoft.Insights/metrics",
                "name": {"value": spec.name, "localizedValue": spec.display},
                "displayDescription": spec.description,
                "unit": spec.unit,
                "timeseries": [{"metadatavalues": [], "data": data}],
                "errorCode": "Success",
            })
        return {
            "cost": points * len(specs),
            "timespan": f"{_iso(start)}/{_iso(end)}",
            "interval": _grain_text(grain),
            "value": value,
            "namespace": resource["type"],
            "resourceregion": resource.get("location", ""),
        }

    @staticmethod
    def _chosen(resource: dict[str, Any], raw: str | None) -> list[series.MetricSpec]:
        known = {s.name.lower(): s for s in series.metrics_for(resource["type"])}
        if raw is None or not raw.strip():
            if not known:
                raise bad_request(f"The resource type '{resource['type']}' has no platform metrics in the sandbox.")
            return [next(iter(known.values()))]
        chosen = []
        for name in (n.strip() for n in raw.split(",")):
            spec = known.get(name.lower())
            if spec is None:
                namespace, _, rtype = resource["type"].partition("/")
                valid = ", ".join(s.name for s in known.values()) or "none"
                raise bad_request(f"Failed to find metric configuration for provider: {namespace}, resource Type: "
                                  f"{rtype}, metric: {name[:100]}, Valid metrics: {valid}")
            if spec not in chosen:
                chosen.append(spec)
        return chosen

    @staticmethod
    def _aggregations(raw: str | None) -> list[str]:
        """The aggregations asked for (empty: each metric's primary one)."""
        if raw is None or not raw.strip():
            return []
        known = {a.lower(): a for a in series.AGGREGATIONS}
        named: list[str] = []
        for name in (n.strip() for n in raw.split(",")):
            canonical = known.get(name.lower())
            if canonical is None:
                raise bad_request(f"Invalid aggregation type '{name[:100]}'. Valid values: "
                                  f"{', '.join(series.AGGREGATIONS)}.")
            if canonical not in named:
                named.append(canonical)
        return named
