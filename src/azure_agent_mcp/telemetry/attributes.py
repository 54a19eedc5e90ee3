"""Span and log attribute names: the OpenTelemetry conventions' where they exist, ``azure_agent_mcp.*`` for ours.

Ours name what a platform team filters on: the correlation id ARM and the audit share, the agent
session, the RBAC operation and scope the guard decided, the decision and its rule. Values are
identifiers only; a token, a secret, a header or a body never becomes an attribute.
"""

from __future__ import annotations

# OpenTelemetry semantic conventions (HTTP client, MCP server, errors)
HTTP_METHOD = "http.request.method"
HTTP_STATUS = "http.response.status_code"
URL_FULL = "url.full"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
MCP_SESSION_ID = "mcp.session.id"
NETWORK_TRANSPORT = "network.transport"
NETWORK_PROTOCOL = "network.protocol.name"
AZURE_SERVICE_REQUEST_ID = "azure.service.request.id"

# ours
CORRELATION_ID = "azure_agent_mcp.correlation_id"
"""The ``x-ms-correlation-request-id`` ARM sees (the tool call's correlation id, in the audit too)."""
CALL_CORRELATION_ID = "azure_agent_mcp.call.correlation_id"
"""On a request span: the correlation id of the tool call it belongs to."""
AGENT_SESSION = "azure_agent_mcp.agent_session.id"
TOOL = "azure_agent_mcp.tool"
MCP_CLIENT = "azure_agent_mcp.client.name"
PLANE = "azure_agent_mcp.plane"
OPERATION = "azure_agent_mcp.rbac.operation"
SCOPE = "azure_agent_mcp.rbac.scope"
DATA_ACTION = "azure_agent_mcp.rbac.data_action"
EFFECT = "azure_agent_mcp.decision.effect"
"""What the policy said: allow, deny, confirm."""
DECISION = "azure_agent_mcp.decision"
"""What happened: allow, confirmed, deny, unconfirmed, cancelled, deadline (as the audit records it)."""
RULE = "azure_agent_mcp.decision.rule"
POLICY = "azure_agent_mcp.decision.policy"
AUDIT_REQUEST_ID = "azure_agent_mcp.audit.request_id"
"""The ``request_id`` linking the intent and outcome audit records of this attempt."""
STATUS = "azure_agent_mcp.status"
ERROR_CODE = "azure_agent_mcp.error.code"
CANCELLED_BY = "azure_agent_mcp.cancelled_by"
PRINCIPAL_OID = "azure_agent_mcp.principal.oid"
PRINCIPAL_TID = "azure_agent_mcp.principal.tid"
PRINCIPAL_APPID = "azure_agent_mcp.principal.appid"
CALLER_OID = "azure_agent_mcp.caller.oid"
"""Over authenticated HTTP: the Entra object id (and tenant) of the person the agent acts for."""
CALLER_TID = "azure_agent_mcp.caller.tid"
AUDIT_KIND = "azure_agent_mcp.audit.kind"
AUDIT_SEQ = "azure_agent_mcp.audit.seq"
AUDIT_EVENT = "azure_agent_mcp.audit"
"""The event name of every audit log record."""
