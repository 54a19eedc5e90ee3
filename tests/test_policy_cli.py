"""policy show|check|explain and audit verify: exit codes, text and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from azure_agent_mcp.cli import main
from azure_agent_mcp.policy import AuditLog

ARM = "https://management.azure.com"
ACCOUNT = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _no_policy_env(monkeypatch):
    monkeypatch.delenv("AZURE_AGENT_MCP_POLICY", raising=False)


@pytest.mark.parametrize(("argv", "code", "effect"), [
    (["--method", "GET", "--url", f"{ARM}/subscriptions?api-version=2022-12-01"], 0, "allow"),
    (["--method", "POST", "--url", f"{ARM}{ACCOUNT}/listKeys?api-version=2023-01-01"], 3, "deny"),
    (["--policy", "no-secrets", "--method", "DELETE", "--url", f"{ARM}{ACCOUNT}"], 4, "confirm"),
    (["--policy", "unrestricted", "--operation", "Microsoft.Storage/storageAccounts/listKeys/action", "--scope", ACCOUNT], 4, "confirm"),
    (["--policy", "unrestricted", "--read-only", "--operation", "Microsoft.Storage/storageAccounts/write"], 3, "deny"),
    (["--operation", "Microsoft.KeyVault/vaults/secrets/readMetadata/action", "--data-action"], 0, "allow"),
    (["--operation", "Microsoft.KeyVault/vaults/secrets/readMetadata/action"], 3, "deny"),
    (["--method", "GET", "--url", "https://evil.example.com/subscriptions"], 3, "deny"),
    (["--method", "GET", "--url", "https://127.0.0.1:8443/vaults/kv1/secrets/db",
      "--arm-endpoint", "https://127.0.0.1:8443", "--keyvault-endpoint", "https://127.0.0.1:8443/vaults/{vault}"], 3, "deny"),
    (["--method", "GET", "--url", "https://127.0.0.1:8443/vaults/kv1/secrets",
      "--arm-endpoint", "https://127.0.0.1:8443", "--keyvault-endpoint", "https://127.0.0.1:8443/vaults/{vault}"], 0, "allow"),
])
def test_explain_exit_codes_and_json(capsys, argv, code, effect):
    got, out, _ = run(capsys, "policy", "explain", "--json", *argv)
    assert got == code
    data = json.loads(out)
    assert data["effect"] == effect
    assert {"effect", "operation", "scope", "data_action", "rule", "policy", "reason", "hint"} <= set(data)


def test_explain_text_names_the_rule(capsys):
    code, out, _ = run(capsys, "policy", "explain", "--method", "POST", "--url", f"{ARM}{ACCOUNT}/listKeys")
    assert code == 3
    assert out.startswith("deny: Microsoft.Storage/storageAccounts/listKeys/action")
    assert "rule:   Deny: */listKeys/action (secret-bearing catalog)" in out
    assert "policy: read-only" in out and "hint:" in out


def test_explain_policy_from_environment_and_file(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("AZURE_AGENT_MCP_POLICY", "no-secrets")
    code, out, _ = run(capsys, "policy", "explain", "--json", "--operation", "Microsoft.Storage/storageAccounts/write")
    assert code == 0 and json.loads(out)["policy"] == "no-secrets"
    file = tmp_path / "p.json"
    file.write_text(json.dumps({"Name": "x", "Actions": ["*/read"], "AssignableScopes": ["/subscriptions/abc"]}))
    code, out, _ = run(capsys, "policy", "explain", "--json", "--policy", str(file), "--operation",
                       "Microsoft.Storage/storageAccounts/read", "--scope", "/subscriptions/abcd")
    data = json.loads(out)
    assert code == 3 and data["rule"] == "outside AssignableScopes [/subscriptions/abc]" and data["policy"] == str(file)


@pytest.mark.parametrize("argv", [
    [],
    ["--method", "GET"],
    ["--operation", "x", "--url", "https://management.azure.com/subscriptions"],
    ["--method", "GET", "--url", f"{ARM}/subscriptions", "--scope", "/"],
    ["--method", "GET", "--url", f"{ARM}/subscriptions", "--keyvault-endpoint", "https://vault.azure.net"],
])
def test_explain_usage_errors_exit_2(capsys, argv):
    code, _, err = run(capsys, "policy", "explain", *argv)
    assert code == 2 and "error" in err


def test_explain_with_a_broken_policy_exits_1(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code, _, err = run(capsys, "policy", "explain", "--policy", str(bad), "--operation", "x/read")
    assert code == 1 and "invalid JSON at line 1" in err


def test_show_prints_the_effective_policy(capsys, tmp_path):
    code, out, _ = run(capsys, "policy", "show")
    data = json.loads(out)
    assert code == 0 and data["policy"] == "read-only" and data["permissions"][0]["actions"] == ["*/read"]
    assert "*/listKeys/action" in data["Deny"]
    code, out, _ = run(capsys, "policy", "show", "unrestricted", "--read-only")
    assert json.loads(out)["readOnlyNarrowed"] is True
    file = tmp_path / "p.json"
    file.write_text(json.dumps({"roleName": "r", "permissions": [{"actions": ["*"]}], "Confirm": ["*/delete"]}))
    code, out, _ = run(capsys, "policy", "show", str(file))
    data = json.loads(out)
    assert data["roleName"] == "r" and data["Confirm"] == ["*/delete"] and data["assignableScopes"] == ["/"]


def test_check_exit_codes(capsys, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"Name": "ok", "Actions": ["*/read"]}))
    code, out, _ = run(capsys, "policy", "check", str(good))
    assert code == 0 and "ok" in out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Name": "x", "Actions": ["*/read"], "Whatever": 1}))
    code, _, err = run(capsys, "policy", "check", str(bad))
    assert code == 1 and "key 'Whatever'" in err and str(bad) in err
    code, _, err = run(capsys, "policy", "check", str(tmp_path / "missing.json"))
    assert code == 1 and "neither a built-in profile" in err


def _log(path: Path, count: int) -> None:
    log = AuditLog(path)
    for i in range(count):
        log.append({"kind": "request", "i": i})


def test_audit_verify_intact_and_broken(capsys, tmp_path):
    path = tmp_path / "audit.jsonl"
    _log(path, 5)
    code, out, _ = run(capsys, "audit", "verify", str(path))
    assert code == 0 and "5 records" in out
    code, out, _ = run(capsys, "audit", "verify", "--json", str(path))
    assert code == 0 and json.loads(out)["ok"] is True and json.loads(out)["records"] == 5

    lines = path.read_text().splitlines()
    del lines[3]
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = run(capsys, "audit", "verify", "--json", str(path))
    data = json.loads(out)
    assert code == 1 and data["ok"] is False
    assert (data["first_bad_file"], data["first_bad_line"], data["bad_seq"]) == (str(path), 4, 5)
    code, _, err = run(capsys, "audit", "verify", str(path))
    assert code == 1 and f"{path} line 4 (seq 5)" in err
    code, _, err = run(capsys, "audit", "verify", str(tmp_path / "nope.jsonl"))
    assert code == 1 and "no such audit file" in err


def test_real_entry_point_exit_codes(tmp_path):
    explain = subprocess.run(
        [sys.executable, "-m", "azure_agent_mcp", "policy", "explain", "--json", "--policy", "no-secrets",
         "--operation", "Microsoft.Resources/subscriptions/resourceGroups/delete", "--scope", "/subscriptions/s/resourceGroups/g"],
        capture_output=True, text=True, timeout=60,
    )
    assert explain.returncode == 4 and json.loads(explain.stdout)["rule"] == "Confirm: */delete"
    path = tmp_path / "audit.jsonl"
    _log(path, 2)
    verify = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "audit", "verify", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0
