"""`whoami`, `login`, `logout` as subprocesses against the sandbox (attached and embedded)."""

from __future__ import annotations

import json
import shutil
import stat

import pytest
from cli_helpers import run


def _one_json_object(stdout: str) -> dict:
    text = stdout.strip()
    assert text.count("\n") == 0, "one JSON object on one line"
    return json.loads(text)


def test_whoami_json_attached_to_a_running_sandbox(sandbox, tmp_path):
    since = sandbox.last_seq()
    done = run(tmp_path, "whoami", "--json", "--sandbox", str(sandbox.manifest_path),
               COPILOT_AGENT_SESSION_ID="host-chat-42")
    assert done.returncode == 0, done.stderr
    info = _one_json_object(done.stdout)
    assert info["session"] == {**info["session"], "id": "host-chat-42", "origin": "host"}
    assert info["agent_markers"] == {"xms_cli_ses": "host-chat-42", "xms_cli_sid": "host-chat-42"}
    assert info["credential"]["kind"] == "sandbox"
    assert info["principal"]["upn"].startswith("developer@")
    assert "eyJ" not in done.stdout and "eyJ" not in done.stderr
    tokens = sandbox.requests(kind="token", since=since)
    assert [t["client_session_query"] for t in tokens] == ["host-chat-42"]


def test_whoami_json_with_the_embedded_sandbox(tmp_path):
    done = run(tmp_path, "whoami", "--json", "--sandbox", "--session-id", "embedded-1", "--session-ttl", "45m",
               "--session-claims", "xms_agent_session")
    assert done.returncode == 0, done.stderr
    info = _one_json_object(done.stdout)
    assert info["agent_markers"] == {"xms_cli_ses": "embedded-1", "xms_agent_session": "embedded-1"}
    assert info["session"]["origin"] == "flag" and info["session"]["expires_at"]
    assert "eyJ" not in done.stdout


def test_whoami_readable_lines(sandbox, tmp_path):
    done = run(tmp_path, "whoami", "--sandbox", str(sandbox.manifest_path), "--session-id", "lines-1")
    assert done.returncode == 0, done.stderr
    assert "session      lines-1 (flag)" in done.stdout
    assert "xms_cli_ses=lines-1" in done.stdout and "eyJ" not in done.stdout


def test_login_whoami_logout_with_the_servers_own_client(sandbox, tmp_path):
    manifest = str(sandbox.manifest_path)
    azure_cli_dir = tmp_path / "azure-cli-config"
    login = run(tmp_path, "login", "--sandbox", manifest, "--credential", "msal", "--session-id", "login-1",
                "--timeout", "30", AZURE_CONFIG_DIR=str(azure_cli_dir))
    assert login.returncode == 0, login.stderr
    assert "devicelogin" in login.stderr or "code" in login.stderr.lower()
    cache = tmp_path / "state" / "msal_cache.bin"
    assert cache.is_file() and stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert "eyJ" not in login.stdout + login.stderr

    since = sandbox.last_seq()
    who = run(tmp_path, "whoami", "--json", "--sandbox", manifest, "--credential", "msal", "--session-id", "msal-2",
              AZURE_CONFIG_DIR=str(azure_cli_dir))
    assert who.returncode == 0, who.stderr
    info = _one_json_object(who.stdout)
    assert info["credential"]["kind"] == "msal" and info["credential"]["token_cache"] == str(cache)
    assert info["agent_markers"] == {"xms_cli_ses": "msal-2", "xms_cli_sid": "msal-2"}
    (token,) = sandbox.requests(kind="token", since=since)
    assert token["grant_type"] == "refresh_token", "the persisted refresh token signed the new session in"
    assert (token["client_session_query"], token["client_session_body"]) == ("msal-2", "msal-2")

    again = run(tmp_path, "whoami", "--json", "--sandbox", manifest, "--credential", "msal", "--session-id", "msal-2")
    assert again.returncode == 0 and sandbox.requests(kind="token", since=since) == [token], \
        "the session's token is reused from the persisted cache by the next process"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600

    assert not azure_cli_dir.exists(), "nothing is written into the Azure CLI's configuration or token cache"

    out = run(tmp_path, "logout", "--sandbox", manifest)
    assert out.returncode == 0 and "Signed out: developer@" in out.stdout
    after = run(tmp_path, "whoami", "--sandbox", manifest, "--credential", "msal")
    assert after.returncode == 1 and "azure-agent-mcp login" in after.stderr
    persisted = cache.read_text()
    assert "rt." not in persisted and "eyJ" not in persisted, "no refresh or access token is left behind"


@pytest.mark.parametrize("bad", ["bad id", "x" * 200])
def test_serve_refuses_a_bad_host_session_at_start(sandbox, tmp_path, bad):
    done = run(tmp_path, "serve", "--sandbox", str(sandbox.manifest_path), COPILOT_AGENT_SESSION_ID=bad)
    assert done.returncode == 2 and "COPILOT_AGENT_SESSION_ID" in done.stderr


def test_auto_order(sandbox, tmp_path, monkeypatch):
    """sandbox > this server's login > az signed in > service principal env > managed identity."""
    from azure_agent_mcp.environment import public_cloud
    from azure_agent_mcp.identity.factory import resolve_auto

    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_TENANT_ID",
                 "IDENTITY_ENDPOINT", "MSI_ENDPOINT", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_AGENT_MCP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "az"))
    cloud = public_cloud("contoso.onmicrosoft.com")
    assert resolve_auto(sandbox.environment()) == "sandbox"

    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi")
    assert resolve_auto(cloud) == "managed-identity"
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-00000000000c")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-a-real-secret")
    assert resolve_auto(cloud) == "service-principal"
    if shutil.which("az"):
        (tmp_path / "az").mkdir()
        (tmp_path / "az" / "azureProfile.json").write_text(json.dumps({"subscriptions": [{"id": "s"}]}))
        assert resolve_auto(cloud) == "azure-cli"
    login = run(tmp_path, "login", "--sandbox", str(sandbox.manifest_path), "--credential", "msal")
    assert login.returncode == 0, login.stderr
    assert resolve_auto(cloud) == "msal"
