"""Azure DevOps' error envelope and api-version rules, shared by every room of the DevOps plane.

The service answers failures with a serialized .NET exception (``$id``, ``message`` starting
with the TF/VS code, ``typeName``, ``typeKey``), never ARM's ``{"error": ...}``; clients key on
``typeKey`` and the TF code, so the sandbox keeps both exactly as the service names them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from azure_agent_mcp.sandbox.protocol import Response, json_response

LATEST_VERSION = (7, 2)
_VERSION = re.compile(r"^([0-9]{1,3})\.([0-9]{1,3})(?:-(preview)(?:\.([0-9]{1,3}))?)?$", re.IGNORECASE)

# typeKey -> the typeName's namespace and assembly, as the service serializes them
_NAMESPACES = {
    "ProjectDoesNotExistWithNameException": "Microsoft.TeamFoundation.Core.WebApi",
    "UnauthorizedRequestException": "Microsoft.TeamFoundation.Framework.Server",
    "GitRepositoryNotFoundException": "Microsoft.TeamFoundation.Git.Server",
    "GitReferenceStaleException": "Microsoft.TeamFoundation.Git.Server",
    "GitItemNotFoundException": "Microsoft.TeamFoundation.Git.Server",
    "GitUnresolvableToCommitException": "Microsoft.TeamFoundation.Git.Server",
    "GitPullRequestNotFoundException": "Microsoft.TeamFoundation.Git.Server",
    "GitPullRequestExistsException": "Microsoft.TeamFoundation.Git.Server",
    "GitPullRequestCommentThreadNotFoundException": "Microsoft.TeamFoundation.Git.Server",
    "GitPushNotFoundException": "Microsoft.TeamFoundation.Git.Server",
    "VssRequestContentTypeNotSupportedException": "Microsoft.VisualStudio.Services.WebApi",
    "WorkItemCommentNotFoundException": "Microsoft.TeamFoundation.WorkItemTracking.Server",
    "InvalidArgumentValueException": "Microsoft.TeamFoundation.SourceControl.WebServer",
    "WorkItemTypeNotFoundException": "Microsoft.TeamFoundation.WorkItemTracking.Server.Metadata",
    "WorkItemUnauthorizedAccessException": "Microsoft.TeamFoundation.WorkItemTracking.Server",
    "RuleValidationException": "Microsoft.TeamFoundation.WorkItemTracking.Server.Validation",
    "WorkItemFieldInvalidException": "Microsoft.TeamFoundation.WorkItemTracking.Server",
    "WorkItemRevisionMismatchException": "Microsoft.TeamFoundation.WorkItemTracking.Server",
    "LegacyQueryException": "Microsoft.TeamFoundation.WorkItemTracking.Server.Common",
    "VssPropertyValidationException": "Microsoft.VisualStudio.Services.Common",
    "VssVersionOutOfRangeException": "Microsoft.VisualStudio.Services.WebApi",
    "VssInvalidPreviewVersionException": "Microsoft.VisualStudio.Services.WebApi",
    "VssInvalidApiVersionException": "Microsoft.VisualStudio.Services.WebApi",
    "VssServiceResponseException": "Microsoft.VisualStudio.Services.WebApi",
    "RouteNotFoundException": "Microsoft.VisualStudio.Services.WebApi",
    "RequestMethodNotSupportedException": "Microsoft.VisualStudio.Services.WebApi",
    "AccountNotFoundException": "Microsoft.VisualStudio.Services.Account",
    "ServiceEndpointNotFoundException": "Microsoft.VisualStudio.Services.ServiceEndpoints.WebApi",
    "VariableGroupNotFoundException": "Microsoft.TeamFoundation.DistributedTask.WebApi",
    "AgentSessionSecretAccessDenied": "Microsoft.VisualStudio.Services.Sandbox",
}


class DevOpsFailure(Exception):
    """A refusal in the service's shape: HTTP status, the TF/VS message, the exception's typeKey."""

    def __init__(self, status: int, type_key: str, message: str, headers: list[tuple[str, str]] | None = None,
                 event_id: int = 3000) -> None:
        super().__init__(message)
        self.status = status
        self.type_key = type_key
        self.message = message
        self.headers = headers or []
        self.event_id = event_id


def devops_error(failure: DevOpsFailure) -> Response:
    namespace = _NAMESPACES.get(failure.type_key, "Microsoft.VisualStudio.Services.WebApi")
    assembly = namespace.rsplit(".", 1)[0] if namespace.endswith(".Metadata") else namespace
    payload = {
        "$id": "1",
        "innerException": None,
        "message": failure.message,
        "typeName": f"{namespace}.{failure.type_key}, {assembly}",
        "typeKey": failure.type_key,
        "errorCode": 0,
        "eventId": failure.event_id,
    }
    return json_response(failure.status, payload, failure.headers, error_code=failure.type_key)


def bad_request(message: str, type_key: str = "InvalidArgumentValueException") -> DevOpsFailure:
    return DevOpsFailure(400, type_key, message)


@dataclass(frozen=True)
class ApiVersion:
    major: int
    minor: int
    preview: bool
    text: str


def parse_api_version(raw: str | None, preview_only: bool = False) -> ApiVersion:
    """The request's api-version, refused as the service refuses it (out of range, missing -preview)."""
    if raw is None or raw == "":
        text = f"{LATEST_VERSION[0]}.{LATEST_VERSION[1]}" + ("-preview" if preview_only else "")
        return ApiVersion(LATEST_VERSION[0], LATEST_VERSION[1], preview_only, text)
    match = _VERSION.match(raw.strip())
    if match is None:
        shown = raw[:64]
        raise bad_request(
            f"Invalid api version string: \"{shown}\". Api version string must be in the format: "
            "{Major}.{Minor}[-{stage}[.{resourceVersion}]]. For example: 7.1-preview.4",
            "VssInvalidApiVersionException")
    major, minor = int(match.group(1)), int(match.group(2))
    preview = match.group(3) is not None
    if (major, minor) > LATEST_VERSION:
        raise bad_request(
            f"The requested REST API version of {major}.{minor} is out of range for this server. The latest REST "
            f"API version this server supports is {LATEST_VERSION[0]}.{LATEST_VERSION[1]}.",
            "VssVersionOutOfRangeException")
    if (major, minor) < (1, 0):
        raise bad_request(
            f"The requested REST API version of {major}.{minor} is out of range for this server. The earliest "
            "REST API version this server supports is 1.0.", "VssVersionOutOfRangeException")
    if preview_only and not preview:
        raise bad_request(
            f"The requested version \"{major}.{minor}\" of the resource is under preview. The -preview flag must be "
            f"supplied in the api-version for such requests. For example: \"{major}.{minor}-preview\"",
            "VssInvalidPreviewVersionException")
    return ApiVersion(major, minor, preview, raw.strip())
