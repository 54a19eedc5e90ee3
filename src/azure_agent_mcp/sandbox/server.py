"""``Sandbox``: the emulator served over HTTPS from a background thread, plus its admin client.

The server runs uvicorn on its own event loop in a daemon thread so tests, the ``sandbox``
command and ``serve --sandbox`` can all embed it. The listening socket is bound before the world
is built, so the world (vault URIs, nextLinks) knows its real port even when the port is 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from azure_agent_mcp.sandbox.world import PUBLIC_CLIENT_ID

MANIFEST_NAME = "sandbox.json"
START_TIMEOUT = 30.0


class SandboxError(Exception):
    """The sandbox could not start, or its admin API refused a request."""


def _droppable_protocol() -> type:
    """uvicorn's h11 protocol, with the transport visible to the app (drop faults) and a quick shutdown."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from azure_agent_mcp.sandbox.app import TRANSPORT_KEY

    class DroppableH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            self.app_state = {**self.app_state, TRANSPORT_KEY: transport}
            super().connection_made(transport)

        def shutdown(self) -> None:
            # An idle keep-alive connection is cut at once: a TLS close would wait for the peer's
            # close_notify, and an idle client never sends it, stalling stop() for the grace period.
            if self.cycle is None or self.cycle.response_complete:
                self.transport.abort()
            else:
                super().shutdown()

    return DroppableH11Protocol


def _refuse_if_in_use(manifest_path: Path) -> None:
    """Two sandboxes sharing a state dir would overwrite each other's CA and manifest."""
    try:
        existing = json.loads(manifest_path.read_text(encoding="utf-8"))
        pid = int(existing.get("pid", 0))
    except (OSError, ValueError, TypeError):
        return
    if pid <= 0 or pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass
    raise SandboxError(f"a sandbox (pid {pid}) is already running with state dir {manifest_path.parent}; stop it or "
                       "choose another --state-dir")


class Sandbox:
    """A running sandbox: ``with Sandbox() as sb: sb.manifest ...``."""

    def __init__(self, state_dir: str | os.PathLike[str] | None = None, port: int = 0,
                 token_lifetime: int = 3600) -> None:
        if not 0 <= int(port) <= 65535:
            raise SandboxError(f"port {port} is not a TCP port (0-65535; 0 picks a free one)")
        if int(token_lifetime) < 1:
            raise SandboxError("token_lifetime must be a positive number of seconds")
        self._requested_dir = Path(state_dir) if state_dir is not None else None
        self._port = int(port)
        self.token_lifetime = int(token_lifetime)
        self.state_dir: Path | None = None
        self.manifest: dict[str, Any] = {}
        self.manifest_path: Path | None = None
        self.port: int | None = None
        self._temp_dir: str | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._ssl: ssl.SSLContext | None = None
        self.state: Any = None  # the in-process SandboxState (read-only use; mutate via the admin API)

    # -- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Sandbox:
        if self._thread is not None:
            raise SandboxError("this sandbox is already running")
        import uvicorn

        from azure_agent_mcp.sandbox.app import SandboxApp
        from azure_agent_mcp.sandbox.state import SandboxState
        from azure_agent_mcp.sandbox.tls import generate_tls

        if self._requested_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="azure-agent-mcp-sandbox-")
            self.state_dir = Path(self._temp_dir)
        else:
            self.state_dir = self._requested_dir
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            _refuse_if_in_use(self.state_dir / MANIFEST_NAME)
        tls = generate_tls(self.state_dir)

        # proto=IPPROTO_TCP matters: asyncio only disables Nagle on sockets whose proto says TCP, and
        # without TCP_NODELAY each response (headers, then body) waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind(("127.0.0.1", self._port))
            sock.listen(1024)
        except OSError as exc:
            sock.close()
            self._cleanup_temp()
            raise SandboxError(f"cannot listen on 127.0.0.1:{self._port}: {exc.strerror or exc}. Choose another "
                               "port, or 0 for a free one.") from exc
        self.port = sock.getsockname()[1]
        origin = f"https://127.0.0.1:{self.port}"
        self.state = SandboxState(origin, self.token_lifetime)
        app = SandboxApp(self.state)
        config = uvicorn.Config(
            app,
            ssl_certfile=str(tls.leaf_cert),
            ssl_keyfile=str(tls.leaf_key),
            http=_droppable_protocol(),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=30,
            date_header=False,  # the app sends Date from the sandbox clock (clock.py)
            timeout_graceful_shutdown=2,
            h11_max_incomplete_event_size=64 * 1024,
        )
        self._server = uvicorn.Server(config)
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._server.serve(sockets=[sock]))
            except BaseException as exc:  # surfaced by start()
                failure.append(exc)
            finally:
                sock.close()
                loop.close()

        self._thread = threading.Thread(target=run, name=f"azure-agent-mcp-sandbox-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if failure or not self._thread.is_alive():
                self._thread = None
                self._cleanup_temp()
                raise SandboxError(f"the sandbox server failed to start: {failure[0] if failure else 'exited'}")
            if time.monotonic() > deadline:
                self.stop()
                raise SandboxError("the sandbox server did not start within 30 s")
            time.sleep(0.01)

        self._ssl = ssl.create_default_context(cafile=str(tls.ca_cert))
        self.manifest = self._build_manifest(origin, tls.ca_cert)
        self.manifest_path = self.state_dir / MANIFEST_NAME
        tmp = self.manifest_path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.manifest, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, self.manifest_path)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        self._server = None
        self._remove_own_files()
        self._cleanup_temp()

    def _remove_own_files(self) -> None:
        """A stopped sandbox leaves no manifest to attach to (and no TLS key) behind."""
        if self.manifest_path is None or self.state_dir is None:
            return
        try:
            on_disk = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if on_disk.get("admin") == self.manifest.get("admin") and on_disk.get("pid") == self.manifest.get("pid"):
            for path in (self.manifest_path, self.state_dir / "leaf-key.pem"):
                try:
                    path.unlink()
                except OSError:
                    pass

    def _cleanup_temp(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _build_manifest(self, origin: str, ca_cert: Path) -> dict[str, Any]:
        world = self.state.world
        return {
            "authority_host": origin,
            "tenant_id": self.state.tenant_id,
            "arm_endpoint": origin,
            "arm_audience": "https://management.azure.com/",
            "keyvault_endpoint": origin + "/vaults/{vault}",
            "keyvault_audience": "https://vault.azure.net",
            "logs_endpoint": origin + "/loganalytics",
            "logs_audience": "https://api.loganalytics.io",
            # Microsoft Graph's agent identity endpoints (graph_agents): /v1.0|beta/servicePrincipals/...
            "graph_endpoint": origin,
            "devops_endpoint": origin + "/devops",
            "devops_vssps_endpoint": origin + "/vssps",
            "devops_organization": "contoso",
            "ca_bundle": str(ca_cert),
            "public_client_id": PUBLIC_CLIENT_ID,
            "subscriptions": [{"id": sub, "name": name} for sub, name in world.subscriptions.items()],
            "users": self.state.manifest_users(),
            "service_principals": [
                {"name": sp.name, "client_id": sp.client_id, "client_secret": sp.client_secret,
                 "object_id": sp.object_id}
                for sp in world.service_principals
                if sp.kind == "application"
            ],
            "agent_identity": self._agent_identity_manifest(),
            "issuer": self.state.issuer,
            "jwks_uri": f"{origin}/{self.state.tenant_id}/discovery/v2.0/keys",
            **self._mcp_manifest(),
            "vaults": [
                {"name": v.name, "subscription": v.subscription, "resource_group": v.resource_group,
                 "url": world.vault_url(v.name)}
                for v in world.vaults.values()
            ],
            "workspaces": [
                {"name": r["name"], "id": r["id"], "customer_id": r["properties"]["customerId"]}
                for r in world.resources.values()
                if r["type"].lower() == "microsoft.operationalinsights/workspaces"
            ],
            "admin": origin + "/_sandbox",
            "sidecar": origin + "/_sidecar",
            "pid": os.getpid(),
            "token_lifetime": self.token_lifetime,
        }

    def _agent_identity_manifest(self) -> dict[str, Any]:
        """Entra Agent ID's seeded principals (see ``agent_world``); the blueprint's secret is its only credential."""
        from azure_agent_mcp.sandbox import agent_world as aw

        world = self.state.world
        blueprint = world.sp_by_client_id(aw.BLUEPRINT_CLIENT_ID)
        user = world.agent_user(object_id=aw.AGENT_USER_OBJECT_ID)
        assert blueprint is not None and user is not None
        return {
            "blueprint_client_id": blueprint.client_id,
            "blueprint_object_id": blueprint.object_id,
            "blueprint_client_secret": blueprint.client_secret,
            "blueprint_federated_subjects": list(blueprint.federated_subjects),
            "agent_identity_id": aw.AGENT_IDENTITY_ID,
            "agent_identity_object_id": aw.AGENT_IDENTITY_ID,
            "agent_user_upn": user.upn,
            "agent_user_object_id": user.object_id,
            "project_identity_client_id": aw.PROJECT_CLIENT_ID,
            "project_identity_object_id": aw.PROJECT_OBJECT_ID,
        }

    def _mcp_manifest(self) -> dict[str, Any]:
        """The MCP server's app registration, the public client MCP clients sign in with, and the consents."""
        from azure_agent_mcp.sandbox import mcp_world as mw

        world = self.state.world
        server = world.sp_by_client_id(mw.MCP_SERVER_CLIENT_ID)
        public = world.public_client(mw.MCP_PUBLIC_CLIENT_ID)
        assert server is not None and public is not None
        consents = mw.consents_listing(world)
        return {
            "mcp_server_app": {
                "client_id": server.client_id,
                "object_id": server.object_id,
                "app_id_uri": mw.MCP_SERVER_APP_ID_URI,
                "scope": mw.MCP_SERVER_SCOPE,
                "client_secret": server.client_secret,
                "federated_subjects": list(server.federated_subjects),
                "consented_users": sorted({c["user"] for c in consents if c["client_id"] == server.client_id}),
            },
            "mcp_public_client": {
                "client_id": public.client_id,
                "redirect_uri": "http://127.0.0.1",
                "redirect_uris": list(public.redirect_uris),
            },
            "consents": consents,
        }

    def environment(self) -> Any:
        from azure_agent_mcp.environment import from_manifest

        return from_manifest(self.manifest)

    # -- admin client -----------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        if not self.manifest:
            raise SandboxError("the sandbox is not running")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.manifest["admin"] + path, data=data, method=method,
                                         headers={"content-type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, context=self._ssl, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise SandboxError(f"admin {method} {path} failed: HTTP {exc.code}: {detail}") from exc

    def requests(self, kind: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """Log entries with ``seq`` greater than ``since`` (optionally one kind: token, arm, vault, entra)."""
        query: dict[str, Any] = {"since": since}
        if kind:
            query["kind"] = kind
        return self._admin("GET", "/requests?" + urlencode(query))["value"]

    def devops_state(self) -> dict[str, Any]:
        """The Azure DevOps organization as plain data (work items, pull requests, threads, refs, pushes)."""
        return self._admin("GET", "/devops/state")

    def devops_comment(self, repository: str, pull_request_id: int, author: str, content: str,
                       thread_id: int | None = None) -> dict[str, Any]:
        """A member (by UPN) comments on a pull request: a new thread, or a reply in ``thread_id``."""
        body: dict[str, Any] = {"repository": repository, "pull_request_id": pull_request_id, "author": author,
                                "content": content}
        if thread_id is not None:
            body["thread_id"] = thread_id
        return self._admin("POST", "/devops/pull-request-comments", body)

    def last_seq(self) -> int:
        return int(self.stats()["last_seq"])

    def stats(self) -> dict[str, Any]:
        return self._admin("GET", "/stats")

    def reset(self) -> None:
        self._admin("POST", "/reset")

    def add_fault(self, path: str, status: int | None = None, count: int = 1, retry_after: float | None = None,
                  latency_ms: int = 0, drop: bool = False) -> dict[str, Any]:
        spec: dict[str, Any] = {"path": path, "count": count, "latency_ms": latency_ms, "drop": drop}
        if status is not None:
            spec["status"] = status
        if retry_after is not None:
            spec["retry_after"] = retry_after
        return self._admin("POST", "/faults", spec)["fault"]

    def clear_faults(self) -> None:
        self._admin("DELETE", "/faults")

    def set_logs_record_limit(self, limit: int) -> None:
        """Log Analytics cuts bigger results there and answers PartialError (``reset()`` restores 500,000)."""
        self._admin("POST", "/logs-record-limit", {"limit": int(limit)})

    def set_agent_rule(self, enabled: bool) -> None:
        self._admin("POST", "/agent-rule", {"enabled": bool(enabled)})

    def set_wrong_identity(self, enabled: bool) -> None:
        """Answer agent-identity token requests with the shared project identity's tokens (``reset()`` ends it)."""
        self._admin("POST", "/wrong-identity", {"enabled": bool(enabled)})

    def set_sidecar_drops_agent_user(self, enabled: bool) -> None:
        """The sidecar answers requests for the agent user with the agent identity's own token (``reset()`` ends it)."""
        self._admin("POST", "/sidecar-drops-agent-user", {"enabled": bool(enabled)})

    def set_obo_answers_for_another_user(self, enabled: bool) -> None:
        """The on-behalf-of grant issues its token for another user than the assertion's (``reset()`` ends it)."""
        self._admin("POST", "/obo-answers-for-another-user", {"enabled": bool(enabled)})

    def add_claims_challenge(self, path: str, claims: dict[str, Any]) -> dict[str, Any]:
        return self._admin("POST", "/claims-challenges", {"path": path, "claims": claims})["challenge"]

    def clear_claims_challenges(self) -> None:
        self._admin("DELETE", "/claims-challenges")

    def grant_consent(self, user: str, resource: str, client_id: str | None = None) -> list[dict[str, str]]:
        """Record a user's consent for an app (the MCP server app by default) to call a resource for them."""
        return self._admin("POST", "/consents", {"user": user, "resource": resource, "client_id": client_id})["value"]

    def revoke_consent(self, user: str, resource: str, client_id: str | None = None) -> list[dict[str, str]]:
        return self._admin("DELETE", "/consents", {"user": user, "resource": resource,
                                                   "client_id": client_id})["value"]

    def consents(self) -> list[dict[str, str]]:
        return self._admin("GET", "/consents")["value"]

    def advance_clock(self, advance: str | float) -> dict[str, Any]:
        """Move the sandbox clock forward (``"PT11M"`` or seconds): PIM expiry without sleeping."""
        return self._admin("POST", "/clock", {"advance": advance})

    def clock(self) -> dict[str, Any]:
        """The sandbox clock: ``now`` (ISO), ``epoch`` and ``offset_seconds`` (``reset()`` sets it back to 0)."""
        return self._admin("GET", "/clock")

    def pim(self) -> dict[str, Any]:
        """PIM's state: requests, schedules (with ``active``), active instances, eligibilities."""
        return self._admin("GET", "/pim")

    def decide_pim_approval(self, request_name: str, approve: bool = True) -> dict[str, Any]:
        """The approver's decision on a PendingApproval schedule request; returns the request document."""
        return self._admin("POST", "/pim/approvals", {"request": request_name,
                                                     "decision": "Approve" if approve else "Deny"})

    def add_client_certificate(self, client_id: str, certificate_pem: str | bytes) -> str:
        """Register a certificate for a service principal's client assertions; returns its SHA-1 thumbprint."""
        pem = certificate_pem.decode() if isinstance(certificate_pem, bytes) else certificate_pem
        return self._admin("POST", "/certificates", {"client_id": client_id, "certificate": pem})["thumbprint"]
