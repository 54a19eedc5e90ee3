"""Talking to the sandbox's Microsoft Graph agent identity endpoints as the blueprint does (tests' helper)."""

from __future__ import annotations

from typing import Any

from conftest import httpx_client

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
AGENTS = "/beta/servicePrincipals/microsoft.graph.agentIdentity"
EPHEMERAL_TAG = "azure-agent-mcp:ephemeral"


class Graph:
    def __init__(self, sandbox) -> None:
        self.manifest = sandbox.manifest
        self.client = httpx_client(self.manifest)
        self.base = self.manifest["graph_endpoint"]
        self.token_url = f"{self.manifest['authority_host']}/{self.manifest['tenant_id']}/oauth2/v2.0/token"
        agent = self.manifest["agent_identity"]
        self.blueprint_id = agent["blueprint_client_id"]
        self.blueprint_secret = agent["blueprint_client_secret"]
        self.developer = next(u["object_id"] for u in self.manifest["users"] if u["name"] == "developer")

    def token(self, scope: str = GRAPH_SCOPE, client_id: str | None = None, secret: str | None = None) -> str:
        response = self.client.post(self.token_url, data={
            "grant_type": "client_credentials", "client_id": client_id or self.blueprint_id,
            "client_secret": secret or self.blueprint_secret, "scope": scope})
        response.raise_for_status()
        return response.json()["access_token"]

    def send(self, method: str, path: str, token: str | None = None, **kwargs):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return self.client.request(method, self.base + path, headers=headers, **kwargs)

    def body(self, **extra):
        return {"displayName": "test agent", "agentIdentityBlueprintId": self.blueprint_id,
                "sponsors@odata.bind": [f"https://graph.microsoft.com/v1.0/users/{self.developer}"], **extra}

    def ephemeral(self) -> list[dict[str, Any]]:
        """The blueprint's agent identities tagged ephemeral, as Graph lists them."""
        answer = self.send("GET", AGENTS, self.token(), params={"$filter": f"tags/any(t:t eq '{EPHEMERAL_TAG}')"})
        assert answer.status_code == 200, answer.text
        return answer.json()["value"]
