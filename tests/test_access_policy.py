"""The Elevation block and Profile files: read exactly, or refused with the key and the problem."""

from __future__ import annotations

import json

import pytest

from azure_agent_mcp.policy import PolicyLoadError, load_policy, parse_policy_text
from azure_agent_mcp.policy.decisions import refuses_unknown_operations
from azure_agent_mcp.policy.elevation import iso_duration, parse_iso_duration

SCOPE = "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg-prod-app"


def _parse(data: dict) -> object:
    return parse_policy_text(json.dumps(data), source="p.json")


def _block(**over: object) -> dict:
    block = {"MaxDuration": "PT1H", "Operations": ["Microsoft.Web/sites/restart/action"], "Scopes": [SCOPE]}
    block.update(over)
    return {k: v for k, v in block.items() if v is not None}


def test_read_only_with_an_elevation_block_keeps_read_only_and_adds_the_block():
    policy = _parse({"Profile": "read-only", "Elevation": _block(Roles=["Website Contributor"])})
    read_only = load_policy("read-only")
    assert policy.blocks == read_only.blocks and policy.deny == read_only.deny and policy.profile == "read-only"
    assert policy.elevation.max_seconds == 3600 and policy.elevation.roles == ("Website Contributor",)
    assert policy.elevation.scopes == (SCOPE,)
    assert refuses_unknown_operations(policy)  # a file based on read-only refuses unknown operations like it
    assert policy.as_json()["Elevation"]["MaxDuration"] == "PT1H"


def test_an_elevation_block_also_fits_a_full_role_definition_file():
    policy = _parse({"Name": "x", "Actions": ["*/read"], "Elevation": _block()})
    assert policy.elevation.operations == ("Microsoft.Web/sites/restart/action",) and policy.profile is None


@pytest.mark.parametrize("name", ["read-only", "no-secrets", "unrestricted"])
def test_built_in_profiles_have_no_elevation(name):
    assert load_policy(name).elevation is None


@pytest.mark.parametrize(
    ("elevation", "key", "words"),
    [
        (_block(MaxDuration=None), "Elevation.MaxDuration", "missing"),
        (_block(MaxDuration="10 minutes"), "Elevation.MaxDuration", "not an ISO 8601 duration"),
        (_block(MaxDuration="P2D"), "Elevation.MaxDuration", "outside PT1M..P1D"),
        (_block(MaxDuration="PT0S"), "Elevation.MaxDuration", "outside"),
        (_block(Scopes=None), "Elevation.Scopes", "missing"),
        (_block(Scopes=[]), "Elevation.Scopes", "empty list"),
        (_block(Scopes=["rg-prod-app"]), "Elevation.Scopes[0]", ""),
        (_block(Operations=None), "Elevation", "neither Roles nor Operations"),
        (_block(Operations=["Microsoft.Web/sites/restart action"]), "Elevation.Operations[0]", "bad pattern"),
        (_block(Roles=[""]), "Elevation.Roles[0]", "empty role name"),
        (_block(Roles="Website Contributor"), "Elevation.Roles", "list of strings"),
        ({**_block(), "Approvers": ["x"]}, "Elevation.Approvers", "unknown key"),
        ("PT1H", "Elevation", "expected an object"),
    ],
)
def test_a_bad_elevation_block_is_refused_naming_the_key(elevation, key, words):
    with pytest.raises(PolicyLoadError) as caught:
        _parse({"Profile": "read-only", "Elevation": elevation})
    assert f"key '{key}'" in str(caught.value) and words in str(caught.value)


def test_a_profile_file_may_not_bring_its_own_permissions():
    with pytest.raises(PolicyLoadError, match="key 'Actions': not allowed next to 'Profile'"):
        _parse({"Profile": "read-only", "Actions": ["*"], "Elevation": _block()})
    with pytest.raises(PolicyLoadError, match="'root' is not a built-in profile"):
        _parse({"Profile": "root"})


@pytest.mark.parametrize(("text", "seconds"), [("PT10M", 600), ("PT1H", 3600), ("P1D", 86400), ("PT1H30M", 5400),
                                               ("PT90S", 90)])
def test_iso_durations_round_trip(text, seconds):
    assert parse_iso_duration(text) == seconds
    assert parse_iso_duration(iso_duration(seconds)) == seconds
