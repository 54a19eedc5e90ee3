"""Azure DevOps REST for one agent session, on azure-core's pipeline, through the guard.

Why not the ``azure-devops`` package: it is built on msrest, whose ``ServiceClient`` sends through
a ``requests.Session`` of its own, with msrest's own authentication and retry hooks. Nothing it
sends would pass the guarded azure-core transport, so no request would be decided, audited or
correlated, and its retries would be invisible to the policy. The guard must be the only door, so
the tools speak Azure DevOps' REST API (JSON over HTTPS, api-version 7.1) through an azure-core
``PipelineClient`` built with the same transport, correlation, retry and deadline policies as the
ARM clients (``AzureSession._client_kwargs``), and a bearer-token policy asking the session's own
credential for Azure DevOps' scope (``env.devops_scope``). The tools need a dozen routes; a
hand-written route per tool is smaller than msrest plus its models, and its plan is the URL it sends.

Errors keep what Azure DevOps says: the HTTP status, the ``TFnnnnnn`` / ``VSnnnnnn`` code the
message starts with, the exception's ``typeKey`` and the message itself (``DevOpsRequestError``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from azure_agent_mcp.policy.urlpath import quote_segment
from azure_agent_mcp.tools.base import ToolInputError
from azure_agent_mcp.tools.clients import AzureRequestError, retry_after_seconds

if TYPE_CHECKING:
    from azure_agent_mcp.environment import AzureEnvironment

API_VERSION = "7.1"
COMMENTS_API_VERSION = "7.1-preview.4"
"""Work item comments are still a preview API in 7.1."""

_TF_CODE = re.compile(r"^((?:TF|VS)\d{3,6})\s*:\s*")
_NAME = re.compile(r"[\x20-\x7e]{1,64}", re.ASCII)  # ASCII only: the guard sends ASCII paths


class DevOpsRequestError(AzureRequestError):
    """Azure DevOps answered with an error: status, TF/VS code (or typeKey), the service's message, a hint."""

    def __init__(self, status: int, code: str, message: str, type_key: str | None = None, hint: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(status, code, message, retry_after)
        self.type_key = type_key
        self.hint = hint


def organization_name(value: str) -> str:
    """The organization, checked by the guard's own rule (``devops_mapping.organization_problem``)."""
    from azure_agent_mcp.policy.devops_mapping import organization_problem

    problem = organization_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def entity_name(value: str, what: str, listing: str) -> str:
    """A project or repository name, checked by the guard's own rules (``devops_mapping.name_problem``):
    the tools address both by name, never by id, so a fence on a name holds."""
    from azure_agent_mcp.policy.devops_mapping import name_problem

    problem = name_problem(what, value) if isinstance(value, str) and value else f"an empty {what} name"
    if problem is None and not _NAME.fullmatch(value):
        problem = f"'{value[:80]}' has characters outside printable ASCII"
    if problem is not None:
        raise ToolInputError(f"Not a usable {what} name: {problem}.", hint=f"Pass the {what}'s name as {listing} shows it.")
    return value


def error_from(status: int, payload: Any, headers: Any = None, hint: str = "") -> DevOpsRequestError:
    """Azure DevOps' error body (``message``, ``typeKey``, ``errorCode``) as a typed error."""
    retry_after = retry_after_seconds(headers)
    message, type_key = "", None
    if isinstance(payload, dict):
        message = str(payload.get("message") or "")
        type_key = str(payload["typeKey"]) if payload.get("typeKey") else None
        if not message and isinstance(payload.get("error"), dict):  # some front doors answer in ARM's shape
            message = str(payload["error"].get("message") or "")
            type_key = type_key or (str(payload["error"].get("code")) if payload["error"].get("code") else None)
    elif isinstance(payload, str):
        message = payload.strip()[:500]
    match = _TF_CODE.match(message)
    code = match.group(1) if match else (type_key or f"HTTP{status}")
    return DevOpsRequestError(status, code, message or f"HTTP {status}", type_key, hint or default_hint(status),
                              retry_after)


def default_hint(status: int) -> str:
    if status == 401:
        return ("Azure DevOps refused the token: the identity is not a member of the organization, or the token is not "
                "for Azure DevOps. whoami shows the identity in use.")
    if status == 403:
        return "Azure DevOps refused the identity the permission this needs; a project administrator can grant it."
    if status == 404:
        return ("Not found, or not visible to this identity: devops_project_list and devops_repo_list show what it can "
                "see.")
    if status == 429:
        return "Azure DevOps is throttling these requests: retry after a pause."
    return ""


@dataclass
class DevOpsResponse:
    status: int
    body: Any
    headers: dict[str, str]


class DevOpsClient:
    """Requests to one organization: ``{devops_endpoint}/{org}/...`` and ``{devops_vssps_endpoint}/{org}/...``."""

    def __init__(self, env: AzureEnvironment, organization: str, credential: Any, client_kwargs: dict[str, Any]) -> None:
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import (
            BearerTokenCredentialPolicy,
            HeadersPolicy,
            RequestIdPolicy,
            UserAgentPolicy,
        )

        self.env = env
        self.organization = organization_name(organization)
        kwargs = dict(client_kwargs)
        policies = [
            RequestIdPolicy(),
            HeadersPolicy({"Accept": "application/json"}),
            UserAgentPolicy(base_user_agent=kwargs.pop("user_agent")),
            *kwargs.pop("per_call_policies"),
            kwargs.pop("retry_policy"),
            BearerTokenCredentialPolicy(credential, env.devops_scope),
            *kwargs.pop("per_retry_policies"),
        ]
        self._connection_timeout = kwargs.get("connection_timeout")
        self._client = PipelineClient(env.devops_endpoint, policies=policies, transport=kwargs["transport"])

    # -- URLs ------------------------------------------------------------------------------

    def org_url(self, path: str, query: dict[str, str] | None = None, api_version: str = API_VERSION) -> str:
        return self._url(self.env.devops_endpoint, [self.organization, "_apis"], path, query, api_version)

    def project_url(self, project: str, path: str, query: dict[str, str] | None = None,
                    api_version: str = API_VERSION) -> str:
        project = entity_name(project, "project", "devops_project_list")
        return self._url(self.env.devops_endpoint, [self.organization, project, "_apis"], path, query, api_version)

    def repo_url(self, project: str, repo: str, path: str = "", query: dict[str, str] | None = None) -> str:
        repo = entity_name(repo, "repository", "devops_repo_list")
        return self.project_url(project, "git/repositories/" + quote_segment(repo) + (f"/{path}" if path else ""), query)

    def vssps_url(self, path: str, query: dict[str, str] | None = None) -> str:
        return self._url(self.env.devops_vssps_endpoint, [self.organization, "_apis"], path, query, API_VERSION)

    @staticmethod
    def _url(base: str, segments: list[str], path: str, query: dict[str, str] | None, api_version: str) -> str:
        """``path`` is already canonical (built from quoted segments); every other part is quoted here."""
        prefix = "/".join(quote_segment(s) for s in segments)
        params = dict(query or {})
        params["api-version"] = api_version
        return f"{base.rstrip('/')}/{prefix}/{path}?{urlencode(params, safe='$,/')}"

    # -- requests ----------------------------------------------------------------------------

    def send(self, method: str, url: str, body: Any = None, *, content_type: str = "application/json",
             hint: str | dict[int, str] = "") -> DevOpsResponse:
        """One request through the guarded pipeline; an error status raises ``DevOpsRequestError``.

        ``hint``: what to do about an error, for every status or by status (``{404: ..., 409: ...}``);
        statuses it does not name get ``default_hint``."""
        from azure.core.rest import HttpRequest

        headers = {}
        content = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = content_type
        request = HttpRequest(method, url, headers=headers, content=content)
        kwargs: dict[str, Any] = {}
        if self._connection_timeout:
            kwargs["connection_timeout"] = self._connection_timeout
        response = self._client.send_request(request, **kwargs)
        try:
            payload: Any = response.json() if response.content else None
        except (ValueError, json.JSONDecodeError):
            payload = response.text()
        if response.status_code >= 400:
            chosen = hint.get(response.status_code, "") if isinstance(hint, dict) else hint
            raise error_from(response.status_code, payload, response.headers, chosen)
        if response.status_code in (203, 302) or (isinstance(payload, str) and "<html" in payload[:200].lower()):
            # Azure DevOps answers an anonymous or unrecognised caller with a sign-in page, not 401
            raise DevOpsRequestError(response.status_code, "SignInRequired",
                                     "Azure DevOps answered with a sign-in page instead of JSON.", None,
                                     default_hint(401))
        return DevOpsResponse(response.status_code, payload, dict(response.headers))

    def close(self) -> None:
        self._client.close()
