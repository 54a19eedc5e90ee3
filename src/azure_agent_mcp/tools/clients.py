"""The tools' handle on Azure for one agent session: SDK clients that all carry the same guard rails.

Every client built here gets the session's tagged credential, the correlation policy, a
transport that goes through the guard (so every attempt is checked and audited first: pages,
polls, retries, challenge re-sends) and the sandbox CA when there is one. The Azure SDK modules are imported on first use: they are heavy
and a stdio server must answer ``initialize`` before anyone asks for Azure.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from azure_agent_mcp import USER_AGENT
from azure_agent_mcp.tools.base import ToolInputError

if TYPE_CHECKING:
    from azure_agent_mcp.environment import AzureEnvironment
    from azure_agent_mcp.identity import AgentSession
    from azure_agent_mcp.policy import Policy


RESOURCES_API_VERSION = "2022-09-01"
SUBSCRIPTIONS_API_VERSION = "2022-12-01"
ROLE_ASSIGNMENTS_API_VERSION = "2022-04-01"
ROLE_DEFINITIONS_API_VERSION = "2022-04-01"
DEPLOYMENTS_API_VERSION = "2026-06-01"
"""azure-mgmt-resource-deployments 2.0's own version, pinned so that a tool's plan names what the SDK sends."""


CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection (each attempt), never past the call's deadline."""
READ_TIMEOUT = 300.0
"""azure-core's own read timeout; within a call, the call's remaining time is the bound."""
RETRY_TOTAL = 3
RETRY_BACKOFF = 0.2
MAX_RETRY_AFTER_IN_CALL = 10.0
"""A Retry-After longer than this (or than the call has left) is answered to the agent, not slept."""


class AzureRequestError(Exception):
    """Azure answered with an error; keeps ARM's code, message, HTTP status and Retry-After (seconds)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds a response asks the client to wait (``retry-after-ms``, ``x-ms-retry-after-ms``, ``Retry-After``
    as seconds or an HTTP date), or None."""
    if headers is None:
        return None
    try:
        lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    except (TypeError, ValueError):
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if not value:
            continue
        try:
            return max(float(value) / scale, 0.0)
        except ValueError:
            pass
        if name == "retry-after":
            from email.utils import parsedate_to_datetime

            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            import time

            return max(when.timestamp() - time.time(), 0.0)
    return None


def _deadline_policies() -> tuple[type, type]:
    """The two policies that bound every SDK request by the tool call's deadline (built on first use:
    azure-core is imported with the first client, not at start-up)."""
    global _POLICIES
    if _POLICIES is not None:
        return _POLICIES
    import sys

    from azure.core.pipeline import PipelineResponse
    from azure.core.pipeline.policies import RetryPolicy, SansIOHTTPPolicy

    from azure_agent_mcp.callcontext import current_control

    class DeadlineRetryPolicy(RetryPolicy):
        """azure-core's retries, within the call's deadline: the retry budget (``timeout``) is what the
        call has left, a retry is not started when its wait would end past the deadline (or the call was
        cancelled), and a Retry-After over ``MAX_RETRY_AFTER_IN_CALL`` is handed back to the agent
        instead of being slept. Waits end early when the call is cancelled."""

        def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
            settings = super().configure_retries(options)
            control = current_control()
            left = control.remaining() if control is not None else None
            if left is not None:
                settings["timeout"] = max(min(settings["timeout"], left), 0.001)
            return settings

        def _wait(self, settings: dict[str, Any], response: Any) -> float:
            if isinstance(response, PipelineResponse):
                retry_after = self.get_retry_after(response)
                if retry_after is not None:
                    return float(retry_after)
            return float(self.get_backoff_time(settings))

        def increment(self, settings: dict[str, Any], response: Any = None, error: Any = None) -> bool:
            retrying = super().increment(settings, response=response, error=error)
            control = current_control()
            if not retrying or control is None:
                return retrying
            if control.interruption() is not None:
                return False
            wait = self._wait(settings, response)
            left = control.remaining()
            if isinstance(response, PipelineResponse) and wait > MAX_RETRY_AFTER_IN_CALL:
                return False
            return left is None or wait < left

        def sleep(self, settings: dict[str, Any], transport: Any, response: Any = None) -> None:
            control = current_control()
            if control is None:
                super().sleep(settings, transport, response=response)
                return
            control.sleep(self._wait(settings, response))

    class DeadlinePolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
        """Per attempt: connection and read timeouts never reach past the call's deadline. On a failure,
        the exception learns which endpoint it came from, so the agent's answer can name it."""

        def __init__(self, label: str) -> None:
            super().__init__()
            self.label = label

        def on_request(self, request: Any) -> None:
            control = current_control()
            left = control.remaining() if control is not None else None
            if left is None:
                return
            left = max(left, 0.001)
            options = request.context.options
            options["connection_timeout"] = min(_number(options.get("connection_timeout"), CONNECT_TIMEOUT), left)
            options["read_timeout"] = min(_number(options.get("read_timeout"), READ_TIMEOUT), left)

        def on_exception(self, request: Any) -> None:
            error = sys.exc_info()[1]
            if error is None or getattr(error, "azure_agent_mcp_request", None) is not None:
                return
            http = request.http_request
            try:
                error.azure_agent_mcp_request = (self.label, http.method.upper(), http.url)  # type: ignore[union-attr]
            except AttributeError:
                pass

    _POLICIES = (DeadlineRetryPolicy, DeadlinePolicy)
    return _POLICIES


_POLICIES: tuple[type, type] | None = None


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else default


@dataclass
class ArmResponse:
    status: int
    body: Any
    headers: dict[str, str]


class AzureSession:
    """One agent session's view of Azure (credential, policy, clients)."""

    def __init__(
        self,
        env: AzureEnvironment,
        session: AgentSession,
        credential: Any,
        policy: Policy,
        guard: Any,
        correlation_policy: Any,
        pool: Any = None,
        devops_organization: str | None = None,
    ) -> None:
        self.env = env
        self.devops_organization = devops_organization
        """The Azure DevOps organization the devops_* tools work in (``serve --devops-organization``); None: none."""
        self._devops_client: Any = None
        self.pool = pool
        """The server's shared ``tools.pool.HttpPool``; None: each client gets a transport (and pool) of its own."""
        self.session = session
        self.credential = credential
        self.policy = policy
        self.guard = guard
        self._per_call = [correlation_policy]
        self._lock = threading.Lock()
        self._resource_clients: dict[str, Any] = {}
        self._subscription_client: Any = None
        self._deployment_clients: dict[str, Any] = {}
        self._resource_graph_client: Any = None
        self._secret_clients: dict[str, Any] = {}
        self._logs_client: Any = None
        self._monitor_clients: dict[str, Any] = {}
        self._api_versions: dict[tuple[str, str], str] = {}
        self.caller: dict[str, Any] | None = None
        """Who this session acts for over authenticated HTTP (tid, oid, upn, azp); None otherwise."""
        self.principal: dict[str, Any] | None = None
        """The claims of the session's ARM token that name its principal, once read (never the token)."""
        self.grants: Any = None
        """The server's ``access.grants.GrantBook`` when the policy has an Elevation block (whoami, access_*)."""

    # -- client construction -------------------------------------------------------------

    def _client_kwargs(self, label: str = "ARM") -> dict[str, Any]:
        # A retry policy per client: an HTTPPolicy is rewired into each pipeline it joins.
        retry_policy, deadline_policy = _deadline_policies()
        if self.pool is not None:  # the shared pool: closing this client leaves it open for the others
            transport = self.guard.transport(self.pool.transport(self.env.connection_verify))
        else:
            transport = self.guard.transport(connection_verify=self.env.connection_verify)
        return {
            "per_call_policies": list(self._per_call),
            "transport": transport,
            "per_retry_policies": [deadline_policy(label)],
            "user_agent": USER_AGENT,
            "connection_verify": self.env.connection_verify,
            "retry_policy": retry_policy(retry_total=RETRY_TOTAL, retry_backoff_factor=RETRY_BACKOFF),
            "connection_timeout": CONNECT_TIMEOUT,
        }

    def subscription_id(self, subscription: str | None) -> str:
        from azure_agent_mcp.tools.arguments import subscription_id

        chosen = subscription or self.env.default_subscription
        if not chosen:
            raise ToolInputError(
                "No subscription given and no default subscription is configured.",
                hint="Pass subscription, or start the server with --subscription.",
            )
        return subscription_id(chosen)

    def resources(self, subscription: str | None = None) -> Any:
        sub = self.subscription_id(subscription)
        with self._lock:
            client = self._resource_clients.get(sub)
            if client is None:
                from azure.mgmt.resource.resources import ResourceManagementClient

                client = ResourceManagementClient(
                    self.credential,
                    sub,
                    base_url=self.env.arm_endpoint,
                    credential_scopes=[self.env.arm_scope],
                    **self._client_kwargs(),
                )
                self._resource_clients[sub] = client
            return client

    def subscriptions(self) -> Any:
        with self._lock:
            if self._subscription_client is None:
                from azure.mgmt.resource.subscriptions import SubscriptionClient

                self._subscription_client = SubscriptionClient(
                    self.credential,
                    base_url=self.env.arm_endpoint,
                    credential_scopes=[self.env.arm_scope],
                    **self._client_kwargs(),
                )
            return self._subscription_client

    def deployments(self, subscription: str | None = None) -> Any:
        """azure-mgmt-resource-deployments' client (deployments moved out of azure-mgmt-resource in 24.0)."""
        sub = self.subscription_id(subscription)
        with self._lock:
            client = self._deployment_clients.get(sub)
            if client is None:
                from azure.mgmt.resource.deployments import DeploymentsMgmtClient

                client = DeploymentsMgmtClient(
                    self.credential,
                    sub,
                    base_url=self.env.arm_endpoint,
                    credential_scopes=[self.env.arm_scope],
                    api_version=DEPLOYMENTS_API_VERSION,
                    **self._client_kwargs(),
                )
                self._deployment_clients[sub] = client
            return client

    def resource_graph(self) -> Any:
        with self._lock:
            if self._resource_graph_client is None:
                from azure.mgmt.resourcegraph import ResourceGraphClient

                self._resource_graph_client = ResourceGraphClient(
                    self.credential,
                    base_url=self.env.arm_endpoint,
                    credential_scopes=[self.env.arm_scope],
                    **self._client_kwargs(),
                )
            return self._resource_graph_client

    def monitor(self, subscription: str | None = None) -> Any:
        """azure-mgmt-monitor's client (activity log, metric definitions, metrics) for one subscription."""
        sub = self.subscription_id(subscription)
        with self._lock:
            client = self._monitor_clients.get(sub)
            if client is None:
                from azure.mgmt.monitor import MonitorManagementClient

                client = MonitorManagementClient(
                    self.credential,
                    sub,
                    base_url=self.env.arm_endpoint,
                    credential_scopes=[self.env.arm_scope],
                    **self._client_kwargs(),
                )
                self._monitor_clients[sub] = client
            return client

    def secrets(self, vault: str) -> Any:
        url = self.vault_url(vault)
        with self._lock:
            client = self._secret_clients.get(url)
            if client is None:
                from azure.keyvault.secrets import SecretClient

                client = SecretClient(
                    url,
                    self.credential,
                    verify_challenge_resource=self.env.verify_challenge_resource,
                    **self._client_kwargs("Key Vault"),
                )
                self._secret_clients[url] = client
            return client

    def logs(self) -> Any:
        """azure-monitor-query's LogsQueryClient for the configured Log Analytics endpoint.

        The endpoint is passed without ``/v1`` (the SDK's default api_version adds it): given an
        endpoint ending in ``/v1``, azure-monitor-query 2.0 keeps only scheme and host, which would
        drop the sandbox's ``/loganalytics`` prefix. The audience is passed explicitly: the SDK would
        otherwise ask for tokens for the endpoint's URL.
        """
        with self._lock:
            if self._logs_client is None:
                from azure.monitor.query import LogsQueryClient

                self._logs_client = LogsQueryClient(
                    self.credential,
                    endpoint=self.env.logs_endpoint.rstrip("/"),
                    credential_scopes=[self.env.logs_scope],
                    **self._client_kwargs("Log Analytics"),
                )
            return self._logs_client

    def devops(self) -> Any:
        """The session's Azure DevOps client (``tools.devops_client``): same transport and policies as ARM's."""
        if not self.devops_organization:
            raise ToolInputError(
                "No Azure DevOps organization is configured.",
                hint="Start the server with --devops-organization ORG (env AZURE_AGENT_MCP_DEVOPS_ORGANIZATION).",
            )
        with self._lock:
            if self._devops_client is None:
                from azure_agent_mcp.tools.devops_client import DevOpsClient

                self._devops_client = DevOpsClient(self.env, self.devops_organization, self.credential,
                                                   self._client_kwargs("Azure DevOps"))
            return self._devops_client

    def vault_url(self, vault: str) -> str:
        """The configured endpoint's URL for a vault given by name, or by a URL under that endpoint."""
        from azure_agent_mcp.tools.arguments import vault_for

        return self.env.vault_url(vault_for(vault, self.env.keyvault_url_template))

    def close(self) -> None:
        with self._lock:
            clients = [*self._resource_clients.values(), *self._secret_clients.values(),
                       *self._deployment_clients.values(), *self._monitor_clients.values()]
            if self._subscription_client is not None:
                clients.append(self._subscription_client)
            if self._logs_client is not None:
                clients.append(self._logs_client)
            if self._resource_graph_client is not None:
                clients.append(self._resource_graph_client)
            if self._devops_client is not None:
                clients.append(self._devops_client)
            self._devops_client = None
            self._resource_clients.clear()
            self._deployment_clients.clear()
            self._secret_clients.clear()
            self._monitor_clients.clear()
            self._subscription_client = None
            self._logs_client = None
            self._resource_graph_client = None
        for client in clients:
            client.close()

    # -- raw ARM ----------------------------------------------------------------------------

    def arm_url(self, path: str, api_version: str | None) -> str:
        """``path`` relative to the ARM endpoint, or an absolute ``nextLink`` (the policy checks its host)."""
        url = path if path.startswith("https://") else self.env.arm_endpoint.rstrip("/") + path
        if api_version:
            url += ("&" if "?" in path else "?") + "api-version=" + quote(api_version, safe="")
        return url

    def arm(self, method: str, path: str, api_version: str | None, body: Any = None) -> ArmResponse:
        """Send one ARM request through the guarded pipeline; raise AzureRequestError on an error status."""
        from azure.core.rest import HttpRequest

        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = body
        request = HttpRequest(method, self.arm_url(path, api_version), **kwargs)
        client = self.resources(self.env.default_subscription or "00000000-0000-0000-0000-000000000000")
        response = client.send_request(request)
        try:
            payload: Any = response.json() if response.content else None
        except (ValueError, json.JSONDecodeError):
            payload = response.text()
        if response.status_code >= 400:
            raise azure_error_from(response.status_code, payload, response.headers)
        return ArmResponse(response.status_code, payload, dict(response.headers))

    def arm_until_done(self, method: str, path: str, api_version: str | None, timeout: float = 300) -> ArmResponse:
        """Send a long-running ARM request and poll it to the end, in this thread.

        azure-core's LROPoller polls on a thread of its own, which loses the tool call's context, so
        its polls would carry fresh correlation ids. Polling here keeps one correlation id per tool
        call (as the Activity Log shows it) and every poll passes the same policy check. The wait
        between polls ends at the call's deadline or when the call is cancelled, and the poll after
        it is then refused by the enforcement point (recorded, not sent).
        """
        import time

        from azure_agent_mcp.callcontext import current_control

        control = current_control()
        response = self.arm(method, path, api_version)
        deadline = time.monotonic() + timeout
        while True:
            headers = {k.lower(): v for k, v in response.headers.items()}
            status_url = headers.get("azure-asyncoperation") or headers.get("location")
            body_status = str((response.body or {}).get("status", "")).lower() if isinstance(response.body, dict) else ""
            pending = response.status == 202 or body_status in ("inprogress", "running", "accepted", "deleting")
            if not pending or not status_url:
                if body_status in ("failed", "canceled"):
                    error = (response.body or {}).get("error") or {}
                    raise AzureRequestError(response.status, str(error.get("code", "OperationFailed")), str(error.get("message", "")))
                return response
            if time.monotonic() > deadline:
                raise AzureRequestError(408, "OperationTimedOut", f"{method} {path} did not finish within {timeout:.0f} s.")
            try:
                delay = float(headers.get("retry-after", "1"))
            except ValueError:
                delay = 1.0
            delay = min(max(delay, 0.1), 10.0)
            if control is not None:
                control.sleep(delay)
            else:
                time.sleep(delay)
            response = self.arm("GET", status_url, None)

    def api_version_for(self, resource_id: str) -> str:
        """The newest stable api-version ARM lists for the resource's type (cached per session)."""
        namespace, resource_type, subscription = split_resource_type(resource_id)
        key = (namespace.lower(), resource_type.lower())
        cached = self._api_versions.get(key)
        if cached:
            return cached
        if namespace.lower() == "microsoft.resources":
            version = RESOURCES_API_VERSION
        else:
            provider = self.arm(
                "GET", f"/subscriptions/{subscription}/providers/{namespace}", RESOURCES_API_VERSION
            ).body
            version = pick_api_version(provider, resource_type)
            if version is None:
                raise ToolInputError(
                    f"Provider {namespace} lists no api-version for resource type '{resource_type}'.",
                    hint="Pass api_version explicitly.",
                )
        self._api_versions[key] = version
        return version


def azure_error_from(status: int, payload: Any, headers: Any = None) -> AzureRequestError:
    retry_after = retry_after_seconds(headers)
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        return AzureRequestError(status, str(error.get("code", "Error")), str(error.get("message", "")), retry_after)
    return AzureRequestError(status, f"HTTP{status}", str(payload)[:500] if payload else f"HTTP {status}", retry_after)


def split_resource_type(resource_id: str) -> tuple[str, str, str]:
    """``/subscriptions/s/resourceGroups/g/providers/NS/t1/n1/t2/n2`` -> (``NS``, ``t1/t2``, ``s``).

    Parsed structurally (``arguments.resource_id``), so a group or resource named ``providers`` is
    a name. A canonical path's escapes are decoded first: the id is what the path names.
    """
    from azure_agent_mcp.policy.urlpath import PathRejected, decode_segment
    from azure_agent_mcp.tools.arguments import resource_id as parse_resource_id

    try:
        decoded = "/" + "/".join(decode_segment(s) for s in resource_id.strip("/").split("/"))
    except PathRejected as exc:
        raise ToolInputError(f"'{resource_id[:200]}' is not an ARM resource id: {exc}.") from None
    parsed = parse_resource_id(decoded)
    return parsed.namespace, parsed.resource_type, parsed.subscription


def pick_api_version(provider: Any, resource_type: str) -> str | None:
    for entry in (provider or {}).get("resourceTypes", []):
        if str(entry.get("resourceType", "")).lower() == resource_type.lower():
            versions = [str(v) for v in entry.get("apiVersions", [])]
            stable = sorted((v for v in versions if "preview" not in v.lower()), reverse=True)
            return (stable or sorted(versions, reverse=True) or [None])[0]
    return None
