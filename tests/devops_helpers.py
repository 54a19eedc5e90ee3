"""A plain HTTPS client for the sandbox's Azure DevOps (httpx, the sandbox CA pinned) and its callers' tokens.

Callers: ``developer`` and ``reader`` (password grant), ``agent`` (the agent user, through the
sandbox's auth sidecar: blueprint -> agent identity -> user_fic), ``tagged`` (the developer with an
agent-session claim), ``newcomer`` (an Entra user who is not a member of the organization).
"""

from __future__ import annotations

from typing import Any

from conftest import SandboxTokens, httpx_client

DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
API = {"api-version": "7.1"}
PREVIEW = {"api-version": "7.1-preview.4"}
ZERO = "0" * 40


def agent_user_token(manifest: dict[str, Any]) -> str:
    ai = manifest["agent_identity"]
    response = httpx_client(manifest).get(
        f"{manifest['sidecar']}/AuthorizationHeaderUnauthenticated/devops",
        params={"AgentIdentity": ai["agent_identity_id"], "AgentUsername": ai["agent_user_upn"]})
    assert response.status_code == 200, response.text
    return response.json()["authorizationHeader"].removeprefix("Bearer ")


class DevOps:
    """Requests to ``{devops_endpoint}/contoso/...`` or ``{devops_vssps_endpoint}/contoso/...`` as one caller."""

    def __init__(self, sandbox: Any, token: str | None) -> None:
        self.sandbox = sandbox
        self.manifest = sandbox.manifest
        self.client = httpx_client(sandbox.manifest)
        self.token = token
        self.org = sandbox.manifest["devops_organization"]

    def url(self, path: str, vssps: bool = False) -> str:
        base = self.manifest["devops_vssps_endpoint"] if vssps else self.manifest["devops_endpoint"]
        return f"{base}/{self.org}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                patch: Any = None, vssps: bool = False, headers: dict[str, str] | None = None,
                content: bytes | None = None) -> Any:
        hdrs = dict(headers or {})
        if self.token is not None:
            hdrs.setdefault("Authorization", f"Bearer {self.token}")
        query = dict(API if params is None else params)
        if patch is not None:
            import json as _json

            hdrs.setdefault("Content-Type", "application/json-patch+json")
            content = _json.dumps(patch).encode()
        return self.client.request(method, self.url(path, vssps), params=query, json=json, content=content,
                                   headers=hdrs)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        response = self.request(method, path, **kw)
        assert response.status_code == status, (response.status_code, response.text)
        return response.json()

    def tip(self, project: str, repo: str, branch: str = "main") -> str:
        refs = self.ok("GET", f"{project}/_apis/git/repositories/{repo}/refs",
                       params={**API, "filter": f"heads/{branch}"})["value"]
        match = [r for r in refs if r["name"] == f"refs/heads/{branch}"]
        return match[0]["objectId"] if match else ZERO

    def vsid(self, upn: str) -> str:
        found = self.ok("GET", "_apis/identities", vssps=True,
                        params={**API, "searchFilter": "General", "filterValue": upn})
        assert found["count"] == 1, found
        return found["value"][0]["id"]


def callers(sandbox: Any, tokens: SandboxTokens) -> dict[str, DevOps]:
    return {
        "developer": DevOps(sandbox, tokens.user_token("developer", DEVOPS_SCOPE)),
        "reader": DevOps(sandbox, tokens.user_token("reader", DEVOPS_SCOPE)),
        "agent": DevOps(sandbox, agent_user_token(sandbox.manifest)),
        "tagged": DevOps(sandbox, tokens.user_token("developer", DEVOPS_SCOPE, session="sess-devops-1")),
        "newcomer": DevOps(sandbox, tokens.user_token("newcomer", DEVOPS_SCOPE)),
    }


def service_error(response: Any, status: int, type_key: str, code: str | None = None) -> str:
    """Assert the service's error envelope; returns the message."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) >= {"$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId"}, body
    assert body["typeKey"] == type_key, body
    assert body["typeName"].split(",")[0].endswith("." + type_key), body
    if code is not None:
        assert body["message"].startswith(code + ":"), body
    return body["message"]


def push_body(branch: str, old: str, changes: list[dict[str, Any]], comment: str = "Change") -> dict[str, Any]:
    return {"refUpdates": [{"name": f"refs/heads/{branch}", "oldObjectId": old}],
            "commits": [{"comment": comment, "changes": changes}]}


def edit(path: str, content: str, change: str = "edit") -> dict[str, Any]:
    return {"changeType": change, "item": {"path": path}, "newContent": {"content": content,
                                                                          "contentType": "rawtext"}}
