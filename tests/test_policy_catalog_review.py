"""The secret catalog against Azure's own operation reference, and the shipped operation lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from azure_agent_mcp.policy import decide, load_policy, secret_bearing
from azure_agent_mcp.policy.catalog import catalog_pattern_for, secret_operations
from azure_agent_mcp.policy.catalog_report import render, reviewed_files
from azure_agent_mcp.policy.known_operations import is_known_operation, post_reads, shipped_namespaces
from azure_agent_mcp.policy.profiles import METADATA_DATA_ACTIONS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "secret-operations.md"
_COMMIT = re.compile(r"[0-9a-f]{40}")


def test_all_twenty_permission_files_were_reviewed_with_their_source_commit():
    files = reviewed_files()
    assert len(files) == 20
    for f in files:
        assert f.source["repo"] == "MicrosoftDocs/azure-docs"
        assert f.source["path"] == f"articles/role-based-access-control/permissions/{f.stem}.md"
        assert _COMMIT.fullmatch(f.source["commit"])
        assert f.operations_reviewed == sum(f.namespaces.values())
        for c in f.candidates:
            assert c["verdict"] in ("secret-bearing", "not-secret-bearing")
            assert isinstance(c["data_action"], bool) and len(c["reason"]) > 10
    assert sum(f.operations_reviewed for f in files) > 15_000


def test_every_operation_judged_secret_bearing_is_in_the_catalog():
    missed = [c["operation"] for f in reviewed_files() for c in f.candidates
              if c["verdict"] == "secret-bearing" and not secret_bearing(c["operation"])]
    assert missed == []


@pytest.mark.parametrize("operation", [
    "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action",
    "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommands/write",
    "Microsoft.ContainerService/managedClusters/runCommand/action",
    "Microsoft.HybridCompute/machines/runCommands/write",
    "Microsoft.Resources/deploymentStacks/write",
    "Microsoft.Resources/deploymentScripts/write",
    "Microsoft.MachineLearningServices/workspaces/listKeys/action",
    "Microsoft.Network/connections/sharedKey/read",
    "Microsoft.OperationalInsights/workspaces/sharedkeys/read",
    "Microsoft.Web/sites/publishxml/read",
])
def test_the_review_gaps_are_closed_under_read_only_and_no_secrets(operation):
    assert secret_bearing(operation)
    for profile in ("read-only", "no-secrets"):
        decision = decide(load_policy(profile), operation, "/subscriptions/x/resourceGroups/g")
        assert decision.effect.value == "deny" and "secret-bearing" in decision.reason


@pytest.mark.parametrize("operation", [
    "Microsoft.KeyVault/vaults/secrets/read", "Microsoft.Web/sites/read", "Microsoft.Storage/storageAccounts/read",
    "Microsoft.Resources/deployments/read", "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Network/expressRouteCircuits/read", "Microsoft.Resources/subscriptions/resourceGroups/read",
])
def test_everyday_reads_stay_allowed_under_read_only(operation):
    assert not secret_bearing(operation), catalog_pattern_for(operation)
    assert decide(load_policy("read-only"), operation, "/subscriptions/x").effect.value == "allow"


def test_read_only_metadata_data_actions_are_not_catalogued():
    assert [op for op in METADATA_DATA_ACTIONS if secret_bearing(op)] == []


def test_catalog_entries_say_where_they_come_from():
    entries = secret_operations()
    assert len(entries) > 400
    assert all(e.source for e in entries)
    assert {e.source.split(":", 1)[0].split(" ", 1)[0] for e in entries} == {"curated", "family", "reviewed"}


def test_shipped_operation_lists_cover_the_namespaces_the_product_serves():
    shipped = {n.namespace.lower() for n in shipped_namespaces().values()}
    for namespace in ("Microsoft.Resources", "Microsoft.Authorization", "Microsoft.Storage", "Microsoft.KeyVault",
                      "Microsoft.Web", "Microsoft.ResourceGraph", "Microsoft.Insights", "Microsoft.OperationalInsights"):
        assert namespace.lower() in shipped
    for listed in shipped_namespaces().values():
        assert _COMMIT.fullmatch(listed.source["commit"]) and len(listed.actions) > 5


def test_post_reads_name_operations_azure_publishes():
    for entry in post_reads().values():
        assert is_known_operation(entry.operation, False), entry.operation
        assert entry.source


def test_unknown_operations_of_shipped_namespaces_are_flagged():
    assert is_known_operation("Microsoft.Storage/storageAccounts/listKeys/action", False)
    assert not is_known_operation("Microsoft.Storage/storageAccounts/listKeyz/read", False)
    assert is_known_operation("Microsoft.Contoso/widgets/read", False)  # not a shipped namespace: not judged


def test_the_generated_page_is_current():
    assert DOCS.read_text(encoding="utf-8") == render(), (
        "docs/secret-operations.md is stale: python -m azure_agent_mcp.policy.catalog_report > docs/secret-operations.md"
    )
