"""The identity flags and commands as an operator's script sees them: exit codes and messages.

Bad session ids and TTLs are usage errors (exit 2) whether they come from a flag or from
COPILOT_AGENT_SESSION_ID; credential problems are runtime failures (exit 1).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_helpers import run


@pytest.mark.parametrize("bad", ["has space", "", "x" * 129, "semi;colon"])
def test_bad_session_id_flag_is_a_usage_error(tmp_path, bad):
    done = run(tmp_path, "whoami", "--session-id", bad)
    assert done.returncode == 2
    assert "--session-id" in done.stderr and done.stdout == ""


def test_bad_host_session_variable_is_a_usage_error(tmp_path):
    done = run(tmp_path, "whoami", "--credential", "managed-identity", COPILOT_AGENT_SESSION_ID="bad id!")
    assert done.returncode == 2
    assert "COPILOT_AGENT_SESSION_ID" in done.stderr and "refusing to start" in done.stderr


@pytest.mark.parametrize("ttl", ["5x", "-1h", "soon"])
def test_bad_ttl_is_a_usage_error(tmp_path, ttl):
    done = run(tmp_path, "whoami", f"--session-ttl={ttl}")
    assert done.returncode == 2 and "--session-ttl" in done.stderr and "45m" in done.stderr


def test_azure_cli_missing_is_explained(tmp_path):
    done = run(tmp_path, "whoami", "--credential", "azure-cli", PATH=str(tmp_path))
    assert done.returncode == 1
    assert "'az'" in done.stderr and "not on PATH" in done.stderr


def test_msal_without_login_says_to_log_in(tmp_path):
    done = run(tmp_path, "whoami", "--credential", "msal", "--tenant", "contoso.onmicrosoft.com")
    assert done.returncode == 1 and "azure-agent-mcp login --tenant contoso.onmicrosoft.com" in done.stderr


def test_service_principal_without_configuration_names_what_is_missing(tmp_path):
    done = run(tmp_path, "whoami", "--credential", "service-principal")
    assert done.returncode == 1 and "AZURE_CLIENT_ID" in done.stderr


def test_login_with_another_credential_points_to_its_own_sign_in(tmp_path):
    done = run(tmp_path, "login", "--credential", "azure-cli")
    assert done.returncode == 1 and "az login" in done.stderr


def test_logout_without_cache_is_fine(tmp_path):
    done = run(tmp_path, "logout")
    assert done.returncode == 0 and "Not signed in" in done.stdout


def test_missing_manifest_is_explained(tmp_path):
    done = run(tmp_path, "whoami", "--sandbox", str(tmp_path / "nope.json"))
    assert done.returncode == 1 and "no sandbox manifest" in done.stderr


def test_identity_cli_stays_light(tmp_path):
    code = (
        "import sys, json\n"
        "from azure_agent_mcp.identity import cli, resolve_session\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('azure', 'msal', 'msal_extensions', 'jwt', 'cryptography'))\n"
        "print(json.dumps(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_whoami_help_lists_the_identity_flags(tmp_path):
    done = run(tmp_path, "whoami", "--help")
    for flag in ("--credential", "--tenant", "--subscription", "--session-id", "--session-ttl",
                 "--session-claims", "--sandbox", "--json"):
        assert flag in done.stdout
