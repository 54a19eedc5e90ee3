"""Time-bound ACTIVE role assignments for service principals, through PIM's ARM API.

Why not activation: PIM's eligible assignments must be activated by their principal, and service
principals (agent identities included) cannot perform the activation steps; Microsoft documents
that applications, service principals and managed identities get time-bound active assignments
instead (https://learn.microsoft.com/azure/role-based-access-control/pim-integration). So an admin
(here the blueprint, holding ``Microsoft.Authorization/roleAssignments/write`` at the scope, which
Azure checks on an ``AdminAssign``) sends ``requestType: AdminAssign`` with ``scheduleInfo.expiration`` (``AfterDuration``), and
``AdminRemove`` to end it early. The assignment ends by itself at its end time even if nobody removes
it: the clean-up can fail, the expiry cannot.

``client`` is either azure-mgmt-authorization's 2020-10-01 ``AuthorizationManagementClient`` (see
``authorization_client``, built by the caller with whatever transport it must use), or an object
with ``arm(method, path, api_version, body)`` (the tools' ``AzureSession``: the request then passes
the agent's guard). Either way the body on the wire is the same PUT of a schedule request.
"""

from __future__ import annotations

import datetime
import re
import uuid
from dataclasses import dataclass
from typing import Any

from azure_agent_mcp.tools.clients import AzureRequestError

PIM_API_VERSION = "2020-10-01"
MIN_DURATION = datetime.timedelta(minutes=5)
"""PIM refuses assignments shorter than five minutes (and removals within five minutes of assigning)."""
MAX_JUSTIFICATION = 500
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ROLE_ID = re.compile(r"^(?:/subscriptions/[^/]+)?/providers/Microsoft\.Authorization/roleDefinitions/"
                      r"(?P<guid>[0-9a-fA-F-]{36})$", re.IGNORECASE)


class TimeBoundAssignmentError(AzureRequestError):
    """PIM (or the input) refused the assignment: ``code`` is PIM's error code when it answered, ``status``
    its HTTP status (None: refused here, nothing was sent). An ``AzureRequestError``, so callers that
    handle Azure's refusals handle these too."""

    def __init__(self, message: str, *, code: str = "InvalidRequest", status: int | None = None) -> None:
        super().__init__(status or 400, code, message)
        self.status = status  # type: ignore[assignment]


@dataclass(frozen=True)
class TimeBoundAssignment:
    request_name: str
    """The AdminAssign request's name (a GUID)."""
    principal_id: str
    role_definition_id: str
    """The full role definition id, as sent: ``/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}``."""
    scope: str
    start: datetime.datetime
    end: datetime.datetime
    """UTC; the assignment stops granting at this instant whatever happens to this process."""


def full_role_definition_id(role: str, scope: str) -> str:
    """A role GUID or definition id as PIM wants it: the full id under the scope's subscription."""
    text = role.strip()
    match = _ROLE_ID.match(text)
    guid = match.group("guid") if match else text
    if not _GUID.match(guid):
        raise TimeBoundAssignmentError(f"role {role!r} is neither a role definition GUID nor a role definition id",
                                       code="InvalidRoleDefinitionId")
    parts = [p for p in scope.split("/") if p]
    prefix = f"/subscriptions/{parts[1]}" if len(parts) >= 2 and parts[0].lower() == "subscriptions" else ""
    return f"{prefix}/providers/Microsoft.Authorization/roleDefinitions/{guid.lower()}"


def iso_duration(duration: datetime.timedelta) -> str:
    """``PT1H30M`` style, whole seconds (what PIM's ``expiration.duration`` takes)."""
    seconds = int(duration.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "") \
        if seconds else "PT0S"


def assign_time_bound(client: Any, *, principal_id: str, role_definition_id: str, scope: str,
                      duration: datetime.timedelta, justification: str,
                      start: datetime.datetime | None = None) -> TimeBoundAssignment:
    """An AdminAssign of the role to the principal at the scope, ending ``duration`` after ``start``.

    ``start`` defaults to now (UTC); a caller that knows Azure's clock (a response ``Date``) passes it.
    Raises ``TimeBoundAssignmentError`` with PIM's code (e.g. ``RoleAssignmentRequestPolicyValidationFailed``
    for a duration over the policy's maximum, ``ActiveDurationTooShort``) or ``AuthorizationFailed``.
    """
    if not _GUID.match(principal_id or ""):
        raise TimeBoundAssignmentError(f"principal id {principal_id!r} is not a GUID", code="InvalidPrincipalId")
    if not scope.startswith("/"):
        raise TimeBoundAssignmentError(f"scope {scope!r} must be an ARM scope starting with '/'", code="InvalidScope")
    if duration < MIN_DURATION:
        raise TimeBoundAssignmentError(
            f"a time-bound assignment lasts at least {int(MIN_DURATION.total_seconds() // 60)} minutes "
            f"(PIM's minimum); {iso_duration(duration)} was asked", code="ActiveDurationTooShort")
    if not justification or not justification.strip() or len(justification) > MAX_JUSTIFICATION:
        raise TimeBoundAssignmentError(f"a justification of 1 to {MAX_JUSTIFICATION} characters is required",
                                       code="JustificationRequired")
    definition = full_role_definition_id(role_definition_id, scope)
    begin = (start or datetime.datetime.now(datetime.timezone.utc)).astimezone(datetime.timezone.utc).replace(microsecond=0)
    name = str(uuid.uuid4())
    answer = _send(client, scope, name, {
        "principalId": principal_id,
        "roleDefinitionId": definition,
        "requestType": "AdminAssign",
        "justification": justification,
        "scheduleInfo": {"startDateTime": _iso(begin),
                         "expiration": {"type": "AfterDuration", "duration": iso_duration(duration)}},
    })
    info = answer.get("scheduleInfo") or {}
    began = _parse(info.get("startDateTime")) or begin  # what PIM recorded wins over what was asked
    ends = _parse((info.get("expiration") or {}).get("endDateTime")) or \
        began + datetime.timedelta(seconds=int(duration.total_seconds()))
    return TimeBoundAssignment(name, principal_id, definition, scope, began, ends)


def remove_time_bound(client: Any, assignment: TimeBoundAssignment) -> None:
    """End the assignment now (AdminRemove). An assignment that no longer exists counts as removed."""
    try:
        _send(client, assignment.scope, str(uuid.uuid4()), {
            "principalId": assignment.principal_id,
            "roleDefinitionId": assignment.role_definition_id,
            "requestType": "AdminRemove",
            "justification": f"end of time-bound assignment {assignment.request_name}",
        })
    except TimeBoundAssignmentError as exc:
        if exc.code in ("RoleAssignmentDoesNotExist", "ActiveAssignmentNotFound", "RoleAssignmentScheduleNotFound"):
            return
        raise


def authorization_client(credential: Any, env: Any, **client_kwargs: Any) -> Any:
    """azure-mgmt-authorization's 2020-10-01 client for ``env``'s ARM (``client_kwargs``: transport, policies).

    Schedule requests are addressed by scope, so the client needs no subscription."""
    from azure.mgmt.authorization.v2020_10_01 import AuthorizationManagementClient

    return AuthorizationManagementClient(credential, base_url=env.arm_endpoint, credential_scopes=[env.arm_scope],
                                         **client_kwargs)


def _send(client: Any, scope: str, name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """PUT the schedule request; its ``properties`` as PIM answered them."""
    body = {"properties": properties}
    kind = properties["requestType"]
    if hasattr(client, "role_assignment_schedule_requests"):
        import io
        import json

        from azure.core.exceptions import HttpResponseError

        try:
            answer = client.role_assignment_schedule_requests.create(
                scope.rstrip("/"), name, io.BytesIO(json.dumps(body).encode()), content_type="application/json")
        except HttpResponseError as exc:
            error = getattr(exc, "error", None)
            code = getattr(error, "code", None) or "HttpResponseError"
            message = getattr(error, "message", None) or str(exc).splitlines()[0]
            raise TimeBoundAssignmentError(f"{kind} refused ({code}): {message}", code=code,
                                           status=exc.status_code) from None
        return dict((answer.serialize(keep_readonly=True) or {}).get("properties") or {})
    path = f"{scope.rstrip('/')}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{name}"
    try:
        response = client.arm("PUT", path, PIM_API_VERSION, body)
    except TimeBoundAssignmentError:
        raise
    except AzureRequestError as exc:
        raise TimeBoundAssignmentError(f"{kind} refused ({exc.code}): {exc.message}", code=exc.code,
                                       status=exc.status) from None
    payload = response.body if isinstance(response.body, dict) else {}
    return dict(payload.get("properties") or {})


def _iso(value: datetime.datetime) -> str:
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: Any) -> datetime.datetime | None:
    """An ARM timestamp (``2026-01-01T10:00:00.0000000Z`` and kin) as an aware UTC datetime."""
    if not isinstance(text, str) or not text:
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if match is None:
        return None
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = match.group(3) or "Z"
    value = datetime.datetime.fromisoformat(f"{match.group(1)}.{fraction}{'+00:00' if zone == 'Z' else zone}")
    return value.astimezone(datetime.timezone.utc)
