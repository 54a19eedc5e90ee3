"""The sandbox's KQL subset: Microsoft's published Resource Graph samples, errors, and hostile text.

The sample queries are the ones Microsoft publishes for Resource Graph ("Starter Resource Graph
queries" and the tag samples), with the table name in front as current Resource Graph wants;
each runs over a small table whose right answer is known by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azure_agent_mcp.sandbox.kql import Column, KqlError, Table, evaluate, parse

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
SUB_B = "5a1db0c5-b000-4000-a000-00000000000b"


def _resource(name, type_, location, sub=SUB_A, tags=None, properties=None, kind=""):
    return {"id": f"/subscriptions/{sub}/resourceGroups/rg/providers/{type_}/{name}", "name": name,
            "type": type_.lower(), "location": location, "subscriptionId": sub, "kind": kind,
            "tags": tags if tags is not None else {}, "properties": properties or {}}


ROWS = [
    _resource("vm-web-01", "Microsoft.Compute/virtualMachines", "eastus",
              tags={"environment": "Internal"},
              properties={"storageProfile": {"osDisk": {"osType": "Linux"}}}),
    _resource("vm-app-02", "Microsoft.Compute/virtualMachines", "westeurope",
              properties={"storageProfile": {"osDisk": {"osType": "Windows"}}}),
    _resource("vm-db-03", "Microsoft.Compute/virtualMachines", "eastus", sub=SUB_B,
              properties={"storageProfile": {"osDisk": {"osType": "Linux"}}}),
    _resource("stprod01", "Microsoft.Storage/storageAccounts", "eastus",
              tags={"tag with a space": "Custom value", "environment": "internal"},
              properties={"minimumTlsVersion": "TLS1_2"}, kind="StorageV2"),
    _resource("stlegacy02", "Microsoft.Storage/storageAccounts", "westeurope",
              tags={"tag with a space": "custom value"},
              properties={"minimumTlsVersion": "TLS1_0"}, kind="Storage"),
    _resource("pip-gw", "Microsoft.Network/publicIPAddresses", "eastus",
              properties={"ipAddress": "20.1.2.3"}),
    _resource("pip-unused", "Microsoft.Network/publicIPAddresses", "eastus", sub=SUB_B, properties={}),
    _resource("kv-prod", "Microsoft.KeyVault/vaults", "eastus", tags={"hidden-title": "x", "owner": "ops"}),
]
TABLES = {"Resources": ROWS}


def run(query):
    return evaluate(query, TABLES)


# --- Microsoft's published samples -------------------------------------------------------------


def test_count_azure_resources():
    table = run("Resources\n| summarize count()")
    assert table.columns == [Column("count_", "long")]
    assert table.rows == [[8]]


def test_count_key_vault_resources():
    table = run("Resources\n| where type =~ 'microsoft.keyvault/vaults'\n| count")
    assert table.columns == [Column("Count", "long")] and table.rows == [[1]]


def test_list_resources_sorted_by_name():
    table = run("Resources\n| project name, type, location\n| order by name asc")
    assert [c.name for c in table.columns] == ["name", "type", "location"]
    assert [r[0] for r in table.rows] == sorted(r["name"] for r in ROWS)
    assert table.rows[0] == ["kv-prod", "microsoft.keyvault/vaults", "eastus"]


def test_show_all_virtual_machines_ordered_by_name_descending():
    table = run("Resources\n| project name, location, type\n| where type =~ 'Microsoft.Compute/virtualMachines'\n"
                "| order by name desc")
    assert table.records() == [
        {"name": "vm-web-01", "location": "eastus", "type": "microsoft.compute/virtualmachines"},
        {"name": "vm-db-03", "location": "eastus", "type": "microsoft.compute/virtualmachines"},
        {"name": "vm-app-02", "location": "westeurope", "type": "microsoft.compute/virtualmachines"},
    ]


def test_order_by_defaults_to_descending_as_kql_does():
    assert run("Resources | where type contains 'compute' | project name | order by name").rows == [
        ["vm-web-01"], ["vm-db-03"], ["vm-app-02"]]
    assert run("Resources | where type contains 'compute' | project name | sort by name asc").rows == [
        ["vm-app-02"], ["vm-db-03"], ["vm-web-01"]]


def test_show_first_five_virtual_machines_by_name_and_os_type():
    table = run("Resources\n| where type =~ 'Microsoft.Compute/virtualMachines'\n"
                "| project name, properties.storageProfile.osDisk.osType\n| top 5 by name desc")
    assert table.columns == [Column("name", "string"), Column("properties_storageProfile_osDisk_osType", "dynamic")]
    assert table.rows == [["vm-web-01", "Linux"], ["vm-db-03", "Linux"], ["vm-app-02", "Windows"]]
    assert run("Resources | where type =~ 'Microsoft.Compute/virtualMachines' | top 1 by name asc").rows[0][1] == \
        "vm-app-02"


def test_count_virtual_machines_by_os_type():
    table = run("Resources\n| where type =~ 'Microsoft.Compute/virtualMachines'\n"
                "| summarize count() by tostring(properties.storageProfile.osDisk.osType)")
    assert table.columns == [Column("properties_storageProfile_osDisk_osType", "string"), Column("count_", "long")]
    assert sorted(table.rows) == [["Linux", 2], ["Windows", 1]]


def test_count_virtual_machines_by_os_type_with_extend():
    table = run("Resources\n| where type =~ 'Microsoft.Compute/virtualMachines'\n"
                "| extend os = properties.storageProfile.osDisk.osType\n| summarize count() by tostring(os)")
    assert table.columns == [Column("os", "string"), Column("count_", "long")]
    assert sorted(table.rows) == [["Linux", 2], ["Windows", 1]]


def test_show_resources_that_contain_storage():
    assert run("Resources\n| where type contains 'storage' | distinct type").rows == [
        ["microsoft.storage/storageaccounts"]]


def test_list_all_public_ip_addresses():
    table = run("Resources\n| where type contains 'publicIPAddresses' and isnotempty(properties.ipAddress)\n"
                "| project properties.ipAddress\n| limit 100")
    assert table.columns == [Column("properties_ipAddress", "dynamic")] and table.rows == [["20.1.2.3"]]


def test_count_resources_that_have_ip_addresses_configured_by_subscription():
    table = run("Resources\n| where type contains 'publicIPAddresses' and isnotempty(properties.ipAddress)\n"
                "| summarize count () by subscriptionId")
    assert table.records() == [{"subscriptionId": SUB_A, "count_": 1}]


def test_list_resources_with_a_specific_tag_value():
    assert run("Resources\n| where tags.environment=~'internal'\n| project name").rows == [["vm-web-01"], ["stprod01"]]
    table = run("Resources\n| where tags.environment=~'internal'\n| project name, tags")
    assert table.records()[1] == {"name": "stprod01", "tags": ROWS[3]["tags"]}


def test_list_all_storage_accounts_with_specific_tag_value():
    table = run("Resources\n| where type =~ 'Microsoft.Storage/storageAccounts'\n"
                "| where tags['tag with a space']=='Custom value'")
    assert [r["name"] for r in table.records()] == ["stprod01"]  # == is case-sensitive
    assert [c.name for c in table.columns] == list(ROWS[0])


def test_list_all_tags_and_their_values():
    table = run("Resources\n| where isnotempty(tags)\n| project tags\n| mvexpand tags\n"
                "| extend tagKey = tostring(bag_keys(tags)[0])\n| extend tagValue = tostring(tags[tagKey])\n"
                "| distinct tagKey, tagValue\n| where tagKey !startswith \"hidden-\"")
    assert table.columns == [Column("tagKey", "string"), Column("tagValue", "string")]
    assert sorted(table.rows) == [["environment", "Internal"], ["environment", "internal"], ["owner", "ops"],
                                  ["tag with a space", "Custom value"], ["tag with a space", "custom value"]]


def test_count_of_a_tag_key_ordered_by_bracketed_count_column():
    table = run("Resources\n| mv-expand tags\n| extend tagKey = tostring(bag_keys(tags)[0])\n"
                "| extend tagValue = tostring(tags[tagKey])\n| where tagKey == \"environment\"\n"
                "| summarize count() by tagValue\n| order by ['count_'] desc")
    assert sorted(table.rows) == [["Internal", 1], ["internal", 1]]


def test_count_resources_by_location():
    table = run("Resources | summarize resources = count() by location | order by resources desc")
    assert table.records() == [{"location": "eastus", "resources": 6}, {"location": "westeurope", "resources": 2}]


def test_storage_accounts_without_tls_1_2():
    table = run("Resources | where type =~ 'microsoft.storage/storageaccounts' "
                "| where properties.minimumTlsVersion != 'TLS1_2' "
                "| project name, tls = tostring(properties.minimumTlsVersion)")
    assert table.rows == [["stlegacy02", "TLS1_0"]]
    assert table.columns == [Column("name", "string"), Column("tls", "string")]


# --- the rest of the subset --------------------------------------------------------------------


@pytest.mark.parametrize(("predicate", "names"), [
    ("name == 'kv-prod'", ["kv-prod"]),
    ("name == 'KV-PROD'", []),
    ("name =~ 'KV-PROD'", ["kv-prod"]),
    ("name !~ 'KV-PROD' and type =~ 'microsoft.keyvault/vaults'", []),
    ("name != 'kv-prod' and type == 'microsoft.keyvault/vaults'", []),
    ("name startswith 'ST'", ["stprod01", "stlegacy02"]),
    ("name contains 'LEGACY'", ["stlegacy02"]),
    ("name !contains 'vm' and name !contains 'st' and name !contains 'pip'", ["kv-prod"]),
    ("location in ('westeurope')", ["vm-app-02", "stlegacy02"]),
    ("location in ('WestEurope')", []),
    ("location in~ ('WestEurope')", ["vm-app-02", "stlegacy02"]),
    ("location !in ('eastus')", ["vm-app-02", "stlegacy02"]),
    ("not(location == 'eastus')", ["vm-app-02", "stlegacy02"]),
    ("location == 'westeurope' or name == 'kv-prod'", ["vm-app-02", "stlegacy02", "kv-prod"]),
    ("isempty(kind) and location == 'westeurope'", ["vm-app-02"]),
    ("isnotempty(kind)", ["stprod01", "stlegacy02"]),
    ("isempty(properties.ipAddress) and type contains 'publicip'", ["pip-unused"]),
    ("name has 'web'", ["vm-web-01"]),
    ("name endswith '02'", ["vm-app-02", "stlegacy02"]),
])
def test_where_operators(predicate, names):
    assert [r["name"] for r in run(f"Resources | where {predicate}").records()] == names


def test_comparisons_on_numbers_and_datetimes():
    rows = [{"n": i, "at": datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=i), "x": i / 2} for i in range(5)]
    tables = {"T": rows}
    assert evaluate("T | where n >= 3 | project n", tables).rows == [[3], [4]]
    assert evaluate("T | where n < 2 or x > 1.5 | project n", tables).rows == [[0], [1], [4]]
    assert evaluate("T | where at > datetime(2024-01-03) | project n", tables).rows == [[3], [4]]
    assert evaluate("T | where at <= datetime('2024-01-02T00:00:00Z') | count", tables).rows == [[2]]
    now = datetime(2024, 1, 5, 12, tzinfo=UTC)
    assert evaluate("T | where at > ago(2d) | project n", tables, now=now).rows == [[3], [4]]
    table = evaluate("T | summarize count() by day = bin(at, 2d) | order by day asc", tables)
    assert table.columns == [Column("day", "datetime"), Column("count_", "long")]
    assert [r[1] for r in table.rows] == [1, 2, 2]


def test_extend_and_project_with_renames_and_functions():
    table = run("Resources | where name == 'stprod01' | extend upper = toupper(name), env = tags.environment, "
                "loc = tolower('EastUS') | project name, upper, env, loc, tagged = tostring(tags['environment'])")
    assert table.records() == [{"name": "stprod01", "upper": "STPROD01", "env": "internal", "loc": "eastus",
                                "tagged": "internal"}]
    assert [c.type for c in table.columns] == ["string", "string", "dynamic", "string", "string"]


def test_extend_replaces_a_column_and_unnamed_expressions_get_column_names():
    table = run("Resources | take 1 | extend name = strlen(name) | project name, strlen(type), 1 + 2")
    assert table.records() == [{"name": 9, "Column1": 33, "Column2": 3}]


def test_summarize_with_several_aggregations_and_keys():
    table = run("Resources | summarize n = count(), regions = dcount(location), tagged = countif(isnotempty(tags.environment)) "
                "by subscriptionId, kind | order by subscriptionId asc, kind asc")
    assert table.columns == [Column("subscriptionId", "string"), Column("kind", "string"), Column("n", "long"),
                             Column("regions", "long"), Column("tagged", "long")]
    assert table.rows == [[SUB_A, "", 4, 2, 1], [SUB_A, "Storage", 1, 1, 0], [SUB_A, "StorageV2", 1, 1, 1],
                          [SUB_B, "", 2, 1, 0]]


def test_summarize_over_no_rows():
    assert run("Resources | where name == 'nothing' | summarize count()").rows == [[0]]
    assert run("Resources | where name == 'nothing' | summarize count() by location").rows == []


def test_mv_expand_of_tags_gives_one_single_key_bag_per_entry():
    table = run("Resources | where name == 'stprod01' | mv-expand tags | project name, tags")
    assert table.rows == [["stprod01", {"tag with a space": "Custom value"}], ["stprod01", {"environment": "internal"}]]
    # an empty bag yields no row; a limit caps rows per input row
    assert run("Resources | where name == 'vm-app-02' | mv-expand tags").rows == []
    assert len(run("Resources | where name == 'stprod01' | mv-expand tags limit 1").rows) == 1
    table = run("Resources | where name == 'kv-prod' | mv-expand tag = tags | project tag")
    assert table.columns == [Column("tag", "dynamic")] and len(table.rows) == 2


def test_nulls_sort_last_descending_and_first_ascending():
    tables = {"T": [{"k": 2}, {"k": None}, {"k": 1}]}
    assert evaluate("T | order by k desc", tables).rows == [[2], [1], [None]]
    assert evaluate("T | order by k asc", tables).rows == [[None], [1], [2]]
    assert evaluate("T | order by k asc nulls last", tables).rows == [[1], [2], [None]]


def test_column_names_are_case_sensitive_and_unknown_columns_are_semantic_errors():
    with pytest.raises(KqlError) as error:
        run("Resources | project Name")
    assert error.value.kind == "semantic" and error.value.token == "Name"
    assert (error.value.line, error.value.position) == (1, 20)
    # even over no rows, as Kusto checks against the schema
    empty = Table([Column("name", "string")], [])
    with pytest.raises(KqlError):
        evaluate("T | where nam == 'x'", {"T": empty})
    assert evaluate("T | where name == 'x'", {"T": empty}).columns == [Column("name", "string")]


def test_unknown_table_is_a_semantic_error():
    with pytest.raises(KqlError) as error:
        run("resourcecontainers | count")
    assert error.value.kind == "semantic" and "resourcecontainers" in error.value.message


def test_records_and_string_literals():
    assert run('Resources | where name == "kv-prod" | project s = strcat(\'a\', "b", \'c\\\'d\')').records() == [
        {"s": "abc'd"}]
    assert run("Resources | where name == @'kv-prod' | count").rows == [[1]]
    assert run("// a comment\nResources // trailing\n| count").rows == [[8]]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "operator"), [
    ("Resources | join (ResourceContainers) on subscriptionId", "join"),
    ("Resources | union ResourceContainers", "union"),
    ("Resources | project-away tags", "project-away"),
    ("Resources | parse name with a '-' b", "parse"),
    ("Resources | make-series count() on x step 1d", "make-series"),
    ("Resources | where name matches regex 'a.*'", "matches"),
    ("Resources | where name has_any ('a', 'b')", "has_any"),
    ("Resources | extend x = split(name, '-')", "split"),
    ("Resources | summarize arg_max(name, *) by type", "arg_max"),
    ("let x = 1; Resources", "let"),
    ("Resources | render table", "render"),
])
def test_unsupported_operators_are_named(query, operator):
    with pytest.raises(KqlError) as error:
        parse(query)
    assert error.value.kind == "unsupported"
    assert error.value.operator == operator
    assert operator in error.value.message
    assert error.value.line == 1 and error.value.position == query.index(operator.split()[0])


@pytest.mark.parametrize(("query", "line", "position", "token"), [
    ("Resources | where", 1, 17, "<EOF>"),
    ("Resources |", 1, 11, "<EOF>"),
    ("Resources | | count", 1, 12, "|"),
    ("Resources\n| where name == 'x\n", 2, 16, "'x"),
    ("Resources | where (name == 'x'", 1, 30, "<EOF>"),
    ("Resources | take ten", 1, 17, "ten"),
    ("Resources | project name,", 1, 25, "<EOF>"),
    ("Resources | wher name == 'x'", 1, 12, "wher"),
    ("Resources | where name == 'x' garbage", 1, 30, "garbage"),
    ("Resources | where name # 'x'", 1, 23, "#"),
    ("| count", 1, 0, "|"),
    ("Resources | order name", 1, 18, "name"),
    ("Resources | where at > datetime(yesterday)", 1, 23, "datetime(yesterday)"),
])
def test_syntax_errors_carry_line_position_and_token(query, line, position, token):
    with pytest.raises(KqlError) as error:
        parse(query)
    assert error.value.kind == "syntax", error.value
    assert (error.value.line, error.value.position, error.value.token) == (line, position, token)


def test_semantic_errors():
    for query, needle in [
        ("Resources | where name", "boolean"),
        ("Resources | extend n = count()", "aggregation"),
        ("Resources | project tolower(name, type)", "argument"),
        ("Resources | project name.first", "dynamic"),
        ("Resources | project nosuchfunction(name)", "nosuchfunction"),
    ]:
        with pytest.raises(KqlError) as error:
            evaluate(query, TABLES)
        assert error.value.kind == "semantic", query
        assert needle in error.value.message, (query, error.value.message)


def test_deep_nesting_is_refused_not_a_crash():
    with pytest.raises(KqlError) as error:
        parse("Resources | where " + "(" * 500 + "true" + ")" * 500)
    assert error.value.kind == "syntax"
    with pytest.raises(KqlError):
        evaluate("Resources | extend x = " + " + ".join(["1"] * 5000), TABLES)


# --- hostile text --------------------------------------------------------------------------------

FRAGMENTS = st.sampled_from([
    "Resources", "|", "where", "project", "extend", "summarize", "count()", "by", "order", "sort", "asc", "desc",
    "take", "top", "mv-expand", "tags", "properties.x.y", "tags['a b']", "name", "==", "=~", "!=", "!~", "in",
    "!in", "(", ")", "[", "]", ",", "=", "'s'", '"d"', "1", "2.5", "1d", "contains", "!contains", "startswith",
    "and", "or", "not(", "isnotempty(", "isempty(", "tostring(", "tolower(", "<", ">=", "datetime(2024-01-01)",
    "join", "distinct", "limit", "-", "+", "*", "/", "%", "bag_keys(", "ago(", "bin(", "'", "\"", "\\", "@",
    "nulls", "first", "\n", "//", ";", "let",
])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FRAGMENTS, max_size=25).map(" ".join))
def test_fragments_of_kql_never_raise_anything_but_kql_error(text):
    try:
        evaluate(text, TABLES)
    except KqlError as error:
        assert error.kind in ("syntax", "unsupported", "semantic")
        assert isinstance(error.message, str) and error.message


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_raises_anything_but_kql_error(text):
    try:
        evaluate(text, TABLES)
    except KqlError as error:
        assert error.kind in ("syntax", "unsupported", "semantic")
        if error.kind == "syntax":
            assert error.line is not None and error.position is not None and error.token is not None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "tags", "properties"]),
                                st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                                             lambda inner: st.lists(inner, max_size=3)
                                             | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                                             max_leaves=6), max_size=4), max_size=6),
       st.sampled_from([
           "T | where a == 1 or b contains 'x'", "T | summarize count() by tostring(a)", "T | order by a asc",
           "T | mv-expand tags", "T | extend c = a + b | where c > 1", "T | where properties.x.y =~ 'q'",
           "T | summarize sum(a), min(b), max(b), avg(a), make_set(a) by bin(a, 2)", "T | distinct a, b",
           "T | top 2 by b", "T | where a in (1, 'x') | project s = tostring(tags['a b'])",
       ]))
def test_queries_over_arbitrary_dynamic_values_never_raise_anything_but_kql_error(rows, query):
    try:
        evaluate(query, {"T": rows})
    except KqlError as error:
        assert error.kind in ("syntax", "unsupported", "semantic")
