"""The names ``--credential`` and ``--session-claims`` accept (stdlib only: the CLI parser needs them)."""

from __future__ import annotations

CREDENTIAL_KINDS = (
    "auto", "sandbox", "msal", "azure-cli", "service-principal", "managed-identity", "agent-identity", "sidecar",
)
TAGGED_KINDS = ("sandbox", "msal", "azure-cli")
"""User identities: their tokens carry the agent-session tag."""
