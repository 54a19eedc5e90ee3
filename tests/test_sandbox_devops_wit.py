"""The sandbox's Azure DevOps work items: JSON Patch (all or nothing), types, WIQL, comments, project scoping."""

from __future__ import annotations

import pytest
from devops_helpers import API, PREVIEW, callers, service_error

WIT = "Storefront/_apis/wit"
AGENT_UPN = "agent-orders@sandbox.onmicrosoft.com"
DEV_UPN = "developer@sandbox.onmicrosoft.com"


@pytest.fixture(scope="module")
def who(sandbox, sandbox_tokens):
    return callers(sandbox, sandbox_tokens)


@pytest.fixture
def fresh(fresh_sandbox_state, sandbox_tokens):
    return callers(fresh_sandbox_state, sandbox_tokens)


def _title(value):
    return [{"op": "add", "path": "/fields/System.Title", "value": value}]


def test_create_a_bug_as_the_agent_user(sandbox, fresh):
    agent = fresh["agent"]
    created = agent.ok("POST", f"{WIT}/workitems/$Bug", patch=[
        *_title("Fix login timeout"),
        {"op": "add", "path": "/fields/Microsoft.VSTS.TCM.ReproSteps", "value": "Sign in on a slow network."},
        {"op": "add", "path": "/fields/System.AssignedTo", "value": AGENT_UPN},
        {"op": "add", "path": "/fields/Microsoft.VSTS.Common.Priority", "value": 1},
    ])
    fields = created["fields"]
    assert created["rev"] == 1 and fields["System.WorkItemType"] == "Bug" and fields["System.State"] == "New"
    assert fields["System.CreatedBy"]["uniqueName"] == AGENT_UPN
    assert fields["System.ChangedBy"]["uniqueName"] == AGENT_UPN
    assert fields["System.AssignedTo"]["displayName"] == "Orders Agent (agent user)"
    assert fields["System.TeamProject"] == "Storefront" and fields["Microsoft.VSTS.Common.Priority"] == 1
    assert set(created["_links"]) >= {"self", "workItemComments", "html", "workItemType"}
    wid = created["id"]
    got = agent.ok("GET", f"{WIT}/workitems/{wid}")
    assert got["fields"]["System.Title"] == "Fix login timeout"
    several = agent.ok("GET", f"{WIT}/workitems", params={**API, "ids": f"1,{wid}",
                                                          "fields": "System.Title,System.State"})
    assert [(w["id"], sorted(w["fields"])) for w in several["value"]] == [
        (1, ["System.State", "System.Title"]), (wid, ["System.State", "System.Title"])]
    batch = agent.ok("POST", f"{WIT}/workitemsbatch", json={"ids": [wid, 999], "errorPolicy": "omit"})
    assert batch["value"][0]["id"] == wid and batch["value"][1] is None
    state = [w for w in sandbox.devops_state()["work_items"] if w["id"] == wid][0]
    assert state["fields"]["System.CreatedBy"] == AGENT_UPN
    entry = [e for e in sandbox.requests(kind="devops") if e["method"] == "POST"][0]
    assert entry["operation"] == "AzureDevOps/wit/workItems/write" and entry["project"] == "Storefront"


def test_an_unknown_type_and_a_bad_create_are_refused(fresh):
    agent = fresh["agent"]
    message = service_error(agent.request("POST", f"{WIT}/workitems/$Incident", patch=_title("x")), 404,
                            "WorkItemTypeNotFoundException", "VS402323")
    assert "Incident" in message and "Storefront" in message
    service_error(agent.request("POST", f"{WIT}/workitems/$Task", patch=[]), 400, "VssPropertyValidationException")
    service_error(agent.request("POST", f"{WIT}/workitems/$Task",
                                patch=[{"op": "add", "path": "/fields/System.Description", "value": "no title"}]),
                  400, "RuleValidationException", "TF401320")
    response = agent.post(f"{WIT}/workitems/$Task", json=_title("wrong content type"))
    message = service_error(response, 415, "VssRequestContentTypeNotSupportedException")
    assert "application/json-patch+json" in message
    service_error(agent.request("POST", f"{WIT}/workitems/$Task",
                                patch=[*_title("x"), {"op": "add", "path": "/fields/System.AreaPath",
                                                      "value": "Platform"}]),
                  400, "WorkItemFieldInvalidException", "TF401347")
    service_error(agent.request("POST", f"{WIT}/workitems/$Task",
                                patch=[*_title("x"), {"op": "add", "path": "/fields/System.AssignedTo",
                                                      "value": "nobody@contoso.com"}]),
                  400, "RuleValidationException", "TF401320")
    titles = [w["fields"].get("System.Title") for w in agent.sandbox.devops_state()["work_items"]]
    assert "x" not in titles and "wrong content type" not in titles


def test_a_patch_applies_whole_or_not_at_all(sandbox, fresh):
    agent = fresh["agent"]
    wid = agent.ok("POST", f"{WIT}/workitems/$Bug", patch=_title("Fix login timeout"))["id"]
    path = f"{WIT}/workitems/{wid}"
    updated = agent.ok("PATCH", path, patch=[{"op": "test", "path": "/rev", "value": 1},
                                             {"op": "replace", "path": "/fields/System.State", "value": "Active"},
                                             {"op": "add", "path": "/fields/System.History", "value": "Started."}])
    assert updated["rev"] == 2 and updated["fields"]["System.State"] == "Active"
    assert updated["fields"]["System.Reason"] != "New" and updated["fields"]["System.CommentCount"] == 1
    refusals = [
        ([{"op": "test", "path": "/rev", "value": 1}, *_title("stale")], 412, "WorkItemRevisionMismatchException",
         "TF26071"),
        ([*_title("half applied"), {"op": "add", "path": "/fields/Custom.Nope", "value": 1}], 400,
         "WorkItemFieldInvalidException", "TF51535"),
        ([*_title("half applied"), {"op": "replace", "path": "/fields/System.CreatedBy", "value": DEV_UPN}], 400,
         "WorkItemFieldInvalidException", "TF401326"),
        ([*_title("half applied"), {"op": "test", "path": "/fields/System.State", "value": "Closed"}], 400,
         "VssPropertyValidationException", None),
        ([{"op": "remove", "path": "/fields/System.Title"}], 400, "RuleValidationException", "TF401320"),
        ([{"op": "replace", "path": "/fields/System.State", "value": "Done"}], 400, "RuleValidationException",
         "TF401320"),
        ([{"op": "move", "from": "/fields/System.Title", "path": "/fields/System.Description"}], 400,
         "VssPropertyValidationException", None),
        ({"op": "add"}, 400, "VssPropertyValidationException", None),
        ([{"op": "add", "path": "/relations/-", "value": {"rel": "System.LinkTypes.Related", "url": "x/999"}}], 400,
         "WorkItemFieldInvalidException", None),
    ]
    for document, status, key, code in refusals:
        service_error(agent.request("PATCH", path, patch=document), status, key, code)
    after = agent.ok("GET", path)
    assert after["rev"] == 2 and after["fields"]["System.Title"] == "Fix login timeout"
    assert after["fields"]["System.State"] == "Active"
    linked = agent.ok("PATCH", path, patch=[{"op": "add", "path": "/relations/-", "value": {
        "rel": "System.LinkTypes.Related", "url": f"{agent.url('Storefront/_apis/wit/workItems/1')}"}}])
    assert linked["rev"] == 3 and linked["relations"][0]["rel"] == "System.LinkTypes.Related"
    assert linked["fields"]["System.ChangedBy"]["uniqueName"] == AGENT_UPN
    service_error(agent.request("PATCH", f"{WIT}/workitems/999", patch=_title("x")), 404,
                  "WorkItemUnauthorizedAccessException", "TF401232")


def test_work_item_ids_are_the_organizations_and_membership_decides(who):
    """As the service's own sample shows: another project's route reaches an item of a project the caller is in."""
    developer = who["developer"]
    platform_item = developer.ok("GET", "Platform/_apis/wit/workitems/4")
    assert platform_item["fields"]["System.TeamProject"] == "Platform"
    through_storefront = developer.ok("GET", f"{WIT}/workitems/4")
    assert through_storefront["fields"]["System.TeamProject"] == "Platform"
    assert "/Storefront/" not in through_storefront["url"]  # the item's own project, by id
    both = developer.ok("GET", f"{WIT}/workitems", params={**API, "ids": "1,4"})
    assert sorted(w["fields"]["System.TeamProject"] for w in both["value"]) == ["Platform", "Storefront"]
    # the agent user is in Storefront only: Platform's item stays out of reach by any route
    service_error(who["agent"].get(f"{WIT}/workitems/4"), 404, "WorkItemUnauthorizedAccessException", "TF401232")
    service_error(who["agent"].get(f"{WIT}/workitems", params={**API, "ids": "1,4"}), 404,
                  "WorkItemUnauthorizedAccessException", "TF401232")
    service_error(who["agent"].get("Platform/_apis/wit/workitems/4"), 404, "ProjectDoesNotExistWithNameException",
                  "TF200016")
    everything = developer.ok("POST", f"{WIT}/wiql", json={"query": "SELECT [System.Id] FROM WorkItems"})
    assert [w["id"] for w in everything["workItems"]] == [1, 2, 3]


def test_stakeholders_work_with_work_items(fresh):
    reader = fresh["reader"]
    created = reader.ok("POST", f"{WIT}/workitems/$User Story", patch=_title("As a shopper I want receipts"))
    assert created["fields"]["System.CreatedBy"]["uniqueName"] == "reader@sandbox.onmicrosoft.com"
    assert reader.ok("GET", f"{WIT}/workitems/1")["id"] == 1


def test_wiql_queries(fresh):
    agent = fresh["agent"]
    wid = agent.ok("POST", f"{WIT}/workitems/$Bug", patch=_title("Fix login timeout"))["id"]
    run = lambda q, **params: agent.ok("POST", f"{WIT}/wiql", params={**API, **params},  # noqa: E731
                                       json={"query": q})
    mine = run("SELECT [System.Id], [System.Title] FROM WorkItems WHERE [System.CreatedBy] = @Me")
    assert [w["id"] for w in mine["workItems"]] == [wid]
    assert [c["referenceName"] for c in mine["columns"]] == ["System.Id", "System.Title"]
    assert mine["queryType"] == "flat" and mine["workItems"][0]["url"].endswith(f"/workItems/{wid}")
    bugs = run("select [System.Id] from workitems where [System.TeamProject] = @project and "
               "[System.WorkItemType] = 'Bug' order by [System.Id] desc")
    assert [w["id"] for w in bugs["workItems"]] == [wid, 2]
    assert bugs["sortColumns"][0]["descending"] is True
    open_items = run("SELECT [System.Id] FROM WorkItems WHERE [System.State] IN ('New', 'Active') "
                     "AND NOT [System.Title] CONTAINS 'cart'")
    assert [w["id"] for w in open_items["workItems"]] == [1, wid]
    either = run("SELECT [System.Id] FROM WorkItems WHERE ([System.Id] = 1 OR [System.Id] = 3) "
                 "AND [System.AreaPath] UNDER 'Storefront' ORDER BY [System.State], [System.Id]")
    assert [w["id"] for w in either["workItems"]] == [1, 3]
    assert len(run("SELECT [System.Id] FROM WorkItems", **{"$top": "2"})["workItems"]) == 2
    by_dev = run(f"SELECT [System.Id] FROM WorkItems WHERE [System.CreatedBy] = '{DEV_UPN}'")
    assert [w["id"] for w in by_dev["workItems"]] == [1, 2, 3]
    recent = run("SELECT [System.Id] FROM WorkItems WHERE [System.CreatedDate] >= @Today - 1")
    assert [w["id"] for w in recent["workItems"]] == [wid]


@pytest.mark.parametrize("query, code, fragment", [
    ("SELECT [System.Id] WorkItems", "TF51006", "missing a FROM clause. The error is caused by «WorkItems» at "
                                                "character 20"),
    ("SELECT [System.Id] FROM WorkItems WHERE [System.State] 'New'", "TF51006",
     "Expecting a comparison operator. The error is caused by «'New'» at character 56"),
    ("SELECT [System.Id] FROM WorkItems WHERE [Custom.Nope] = 1", "TF51005", "«[Custom.Nope]» at character 41"),
    ("SELECT [System.Id] FROM WorkItems WHERE ([System.Id] = 1", "TF51006", "incomplete"),
    ("SELECT [System.Id] FROM WorkItems WHERE [System.Id] = 1 GARBAGE", "TF51006", "«GARBAGE» at character 57"),
    ("SELECT [System.Id] FROM WorkItems WHERE [System.Id] = 1 ; DROP", "TF51006", "«;» at character 57"),
    ("", "TF51006", "empty"),
])
def test_wiql_syntax_errors_name_the_token_and_its_position(who, query, code, fragment):
    message = service_error(who["agent"].post(f"{WIT}/wiql", json={"query": query}), 400, "LegacyQueryException",
                            code)
    assert fragment in message


def test_work_item_comments_and_types(fresh):
    agent = fresh["agent"]
    posted = agent.ok("POST", f"{WIT}/workItems/2/comments", params=PREVIEW, json={"text": "Looking into it."})
    assert posted["createdBy"]["uniqueName"] == AGENT_UPN and posted["workItemId"] == 2
    listed = agent.ok("GET", f"{WIT}/workItems/2/comments", params=PREVIEW)
    assert listed["totalCount"] == 1 and listed["comments"][0]["text"] == "Looking into it."
    assert agent.ok("GET", f"{WIT}/workitems/2")["fields"]["System.CommentCount"] == 1
    service_error(agent.post(f"{WIT}/workItems/2/comments", params=PREVIEW, json={"text": ""}), 400,
                  "InvalidArgumentValueException")
    service_error(agent.post(f"{WIT}/workItems/2/comments", json={"text": "x"}), 400,
                  "VssInvalidPreviewVersionException")
    types = agent.ok("GET", f"{WIT}/workitemtypes")
    assert [t["name"] for t in types["value"]] == ["Bug", "Task", "User Story", "Epic", "Feature"]
    bug = agent.ok("GET", f"{WIT}/workitemtypes/Bug")
    assert [s["name"] for s in bug["states"]] == ["New", "Active", "Resolved", "Closed"]
    service_error(agent.get(f"{WIT}/workitemtypes/Incident"), 404, "WorkItemTypeNotFoundException", "VS402323")


def test_deleting_a_work_item_sends_it_to_the_recycle_bin(sandbox, fresh):
    agent = fresh["agent"]
    wid = agent.ok("POST", f"{WIT}/workitems/$Task", patch=_title("Temporary"))["id"]
    service_error(agent.request("DELETE", f"{WIT}/workitems/{wid}", params={**API, "destroy": "true"}), 400,
                  "WorkItemUnauthorizedAccessException")
    deleted = agent.ok("DELETE", f"{WIT}/workitems/{wid}")
    assert deleted["id"] == wid and deleted["deletedBy"] == f"Orders Agent (agent user) <{AGENT_UPN}>"
    service_error(agent.get(f"{WIT}/workitems/{wid}"), 404, "WorkItemUnauthorizedAccessException", "TF401232")
    service_error(agent.request("DELETE", "Storefront/_apis/wit/workitems/4"), 404,
                  "WorkItemUnauthorizedAccessException", "TF401232")  # a Platform item, through Storefront
    assert 4 in [w["id"] for w in sandbox.devops_state()["work_items"]]
    assert sandbox.requests(kind="devops")[-3]["operation"] == "AzureDevOps/wit/workItems/delete"
