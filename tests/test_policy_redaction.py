"""redact_secrets(): secret fields in allowed responses are replaced, and the result says where."""

from __future__ import annotations

import copy

from azure_agent_mcp.policy import REDACTED, redact_secrets

LIST_KEYS = {
    "keys": [
        {"keyName": "key1", "value": "AAAAbase64key1==", "permissions": "FULL", "creationTime": "2025-01-01T00:00:00Z"},
        {"keyName": "key2", "value": "BBBBbase64key2==", "permissions": "FULL"},
    ]
}

APP_SETTINGS = {
    "id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/w/config/appsettings",
    "name": "appsettings",
    "properties": {
        "WEBSITE_RUN_FROM_PACKAGE": "1",
        "STORAGE": "DefaultEndpointsProtocol=https;AccountName=st;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net",
        "BUS": "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=abc=",
        "DB": "Server=tcp:db;Database=orders;User ID=app;Password=p@ss;",
        "BLOB_SAS": "https://st.blob.core.windows.net/c?sv=2022-11-02&sp=r&sig=AbCdEf%3D",
        "FEATURE_FLAG": "on",
    },
}


def test_storage_list_keys_values_are_redacted():
    result, paths = redact_secrets(LIST_KEYS)
    assert paths == ["keys[0].value", "keys[1].value"]
    assert [k["value"] for k in result["keys"]] == [REDACTED, REDACTED]
    assert [k["keyName"] for k in result["keys"]] == ["key1", "key2"]
    assert LIST_KEYS["keys"][0]["value"] == "AAAAbase64key1==", "the input is not modified"


def test_app_settings_with_embedded_credentials_are_redacted_by_value():
    result, paths = redact_secrets(APP_SETTINGS)
    assert set(paths) == {"properties.STORAGE", "properties.BUS", "properties.DB", "properties.BLOB_SAS"}
    assert result["properties"]["FEATURE_FLAG"] == "on"
    assert result["properties"]["WEBSITE_RUN_FROM_PACKAGE"] == "1"
    assert result["id"] == APP_SETTINGS["id"]


def test_named_secret_fields_anywhere():
    doc = {
        "items": [
            {"name": "cosmos", "properties": {"primaryMasterKey": "k1", "secondaryMasterKey": "k2",
                                               "connectionStrings": [{"connectionString": "AccountEndpoint=x;AccountKey=y"}]}},
            {"name": "sql", "properties": {"administratorLoginPassword": "p", "administratorLogin": "admin"}},
            {"name": "redis", "properties": {"accessKeys": None, "primary_key": "rk"}},
            {"name": "acr", "passwords": [{"name": "password", "value": "acr-pass"}], "username": "acr"},
            {"name": "aks", "kubeconfigs": [{"name": "clusterAdmin", "value": "YXBpVmVyc2lvbjogdjE="}]},
        ]
    }
    result, paths = redact_secrets(doc)
    assert set(paths) == {
        "items[0].properties.primaryMasterKey",
        "items[0].properties.secondaryMasterKey",
        "items[0].properties.connectionStrings",
        "items[1].properties.administratorLoginPassword",
        "items[2].properties.primary_key",
        "items[3].passwords[0].value",
        "items[4].kubeconfigs[0].value",
    }
    assert result["items"][1]["properties"]["administratorLogin"] == "admin"
    assert result["items"][2]["properties"]["accessKeys"] is None
    assert result["items"][3]["username"] == "acr"


def test_key_vault_secret_bundle_value():
    bundle = {"value": "hunter2", "id": "https://kv.vault.azure.net/secrets/db/abc", "attributes": {"enabled": True},
              "contentType": "text/plain"}
    result, paths = redact_secrets({"bundle": bundle})
    assert result["bundle"]["value"] == REDACTED and paths == ["bundle.value"]
    assert result["bundle"]["attributes"] == {"enabled": True}
    # the shape keyvault_secret_get returns
    tool = {"vault": "kv", "name": "db", "enabled": True, "content_type": None, "tags": None, "value": "hunter2"}
    result, paths = redact_secrets(tool)
    assert result["value"] == REDACTED and paths == ["value"] and result["name"] == "db"
    # a field named like a secret is withheld whole
    result, paths = redact_secrets({"secret": bundle})
    assert result["secret"] == REDACTED and paths == ["secret"]


def test_tokens_in_free_text_are_redacted():
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIxMjM0NTY3OCJ9.c2lnbmF0dXJl"
    result, paths = redact_secrets({"message": f"token was {jwt}", "list": [jwt]})
    assert result == {"message": REDACTED, "list": [REDACTED]} and paths == ["message", "list[0]"]


def test_ordinary_resource_documents_are_untouched():
    doc = {
        "value": [
            {"id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/st", "name": "st",
             "type": "Microsoft.Storage/storageAccounts", "location": "eastus", "tags": {"env": "prod", "owner": "team"},
             "properties": {"keyPolicy": {"keyExpirationPeriodInDays": 90}, "provisioningState": "Succeeded",
                            "encryption": {"keySource": "Microsoft.Storage"}}},
            {"id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/kv/secrets/db", "name": "db",
             "properties": {"attributes": {"enabled": True}, "contentType": None}},
        ],
        "nextLink": "https://management.azure.com/subscriptions/s/resources?api-version=2022-09-01&$skiptoken=abc",
    }
    result, paths = redact_secrets(copy.deepcopy(doc))
    assert paths == [] and result == doc


# -- deployment outputs and secure parameters, by shape -----------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from azure_agent_mcp.policy.redaction import withhold_outputs  # noqa: E402

_SECRETISH = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=", min_size=12,
                     max_size=40).map(lambda s: "s3cr3t-" + s)
_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-", min_size=1, max_size=16)
_TYPES = st.sampled_from(["String", "string", "Int", "Object", "Array", "Bool", "SecureString", "secureObject",
                          "SECURESTRING"])
_VALUES = st.one_of(_SECRETISH, st.lists(_SECRETISH, min_size=1, max_size=3), st.dictionaries(_NAMES, _SECRETISH,
                                                                                             min_size=1, max_size=3))


@st.composite
def deployment_documents(draw: st.DrawFn) -> tuple[dict, list]:
    """A deployment as ARM (or a misbehaving proxy) might return it, and every value that must not survive."""
    secrets: list = []
    outputs = {}
    for name in draw(st.lists(_NAMES, max_size=4, unique=True)):
        value = draw(_VALUES)
        secrets.append(value)
        outputs[name] = {"type": draw(_TYPES), "value": value} if draw(st.integers(0, 4)) else value
    parameters = {}
    for name in draw(st.lists(_NAMES, max_size=4, unique=True)):
        kind = draw(_TYPES)
        if kind.lower() in ("securestring", "secureobject"):
            value = draw(_VALUES)
            secrets.append(value)
        else:  # an ordinary parameter: shown, so it never shares a value with a secret here
            value = "plain-" + name
        parameters[name] = {"type": kind, "value": value}
    body = {"id": "/subscriptions/x/resourceGroups/g/providers/Microsoft.Resources/deployments/d",
            "properties": {"provisioningState": "Succeeded", "outputs": outputs, "parameters": parameters}}
    wrapper = draw(st.sampled_from(["deployment", "body", "resource", None]))
    return ({wrapper: body} if wrapper else body), secrets


def _leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


@settings(max_examples=300, deadline=None)
@given(document=deployment_documents())
def test_no_output_value_and_no_secure_parameter_value_survives_withholding(document):
    data, secrets = document
    original = copy.deepcopy(data)
    withheld, paths = withhold_outputs(data)
    assert data == original  # the input is not modified
    dumped = repr(withheld)
    for secret in secrets:
        for leaf in _leaves(secret):
            assert leaf not in dumped
    body = withheld.get("deployment") or withheld.get("body") or withheld.get("resource") or withheld
    for name, output in body["properties"]["outputs"].items():  # names and types stay, values go
        assert output == REDACTED or output.get("value") == REDACTED
    for name, parameter in body["properties"]["parameters"].items():
        secure = parameter["type"].lower() in ("securestring", "secureobject")
        assert (parameter["value"] == REDACTED) == secure  # ordinary parameters are kept as they are
    assert len(paths) == len(body["properties"]["outputs"]) + sum(
        1 for p in body["properties"]["parameters"].values() if p["type"].lower() in ("securestring", "secureobject"))


def test_a_secure_parameter_without_a_value_is_left_as_arm_returns_it():
    body = {"properties": {"parameters": {"adminPassword": {"type": "SecureString"}, "sku": {"type": "String",
                                                                                            "value": "S1"}}}}
    withheld, paths = withhold_outputs(body)
    assert withheld == body and paths == []
