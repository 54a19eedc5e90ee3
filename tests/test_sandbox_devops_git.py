"""The sandbox's Azure DevOps Git: repositories, refs, items, commits and pushes (atomic, author = the token)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from devops_helpers import API, ZERO, DevOps, callers, edit, push_body, service_error

REPO = "Storefront/_apis/git/repositories/storefront-web"
AGENT_UPN = "agent-orders@sandbox.onmicrosoft.com"


@pytest.fixture(scope="module")
def who(sandbox, sandbox_tokens):
    return callers(sandbox, sandbox_tokens)


@pytest.fixture
def fresh(fresh_sandbox_state, sandbox_tokens):
    return callers(fresh_sandbox_state, sandbox_tokens)


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _repo_state(sandbox, name="storefront-web"):
    for project in sandbox.devops_state()["projects"]:
        for repo in project["repositories"]:
            if repo["name"] == name:
                return repo
    raise AssertionError(name)


def test_repositories_are_code_and_stakeholders_get_none(who):
    repos = who["agent"].ok("GET", "Storefront/_apis/git/repositories")
    assert [r["name"] for r in repos["value"]] == ["storefront-web"]
    repo = repos["value"][0]
    assert repo["defaultBranch"] == "refs/heads/main" and repo["project"]["name"] == "Storefront"
    assert repo["remoteUrl"].endswith("/contoso/Storefront/_git/storefront-web")
    assert who["agent"].ok("GET", REPO)["id"] == repo["id"]
    assert who["agent"].ok("GET", f"Storefront/_apis/git/repositories/{repo['id']}")["name"] == "storefront-web"
    assert who["reader"].ok("GET", "Storefront/_apis/git/repositories") == {"count": 0, "value": []}
    service_error(who["reader"].get(REPO), 404, "GitRepositoryNotFoundException", "TF401019")
    service_error(who["reader"].get(f"{REPO}/items", params={**API, "path": "/README.md"}), 404,
                  "GitRepositoryNotFoundException", "TF401019")
    service_error(who["agent"].get("Storefront/_apis/git/repositories/nope"), 404,
                  "GitRepositoryNotFoundException", "TF401019")
    service_error(who["agent"].get("Platform/_apis/git/repositories/platform-infra"), 404,
                  "ProjectDoesNotExistWithNameException", "TF200016")
    assert who["developer"].ok("GET", "Platform/_apis/git/repositories")["value"][0]["name"] == "platform-infra"


def test_items_read_the_seeded_tree_with_git_object_ids(who):
    item = who["agent"].ok("GET", f"{REPO}/items",
                           params={**API, "path": "/src/auth/session.py", "includeContent": "true"})
    assert "LOGIN_TIMEOUT_SECONDS = 5" in item["content"]
    assert item["gitObjectType"] == "blob" and item["objectId"] == _git_blob_id(item["content"].encode())
    assert item["commitId"] == who["agent"].tip("Storefront", "storefront-web")
    tree = who["agent"].ok("GET", f"{REPO}/items", params={**API, "path": "/", "recursionLevel": "Full"})
    paths = [i["path"] for i in tree["value"]]
    assert {"/README.md", "/src/auth/session.py", "/tests/test_session.py", "/src", "/src/auth"} <= set(paths)
    assert tree["value"][0]["gitObjectType"] == "tree" and tree["value"][0]["isFolder"]
    one_level = who["agent"].ok("GET", f"{REPO}/items", params={**API, "path": "/src", "recursionLevel": "OneLevel"})
    assert sorted(i["path"] for i in one_level["value"]) == ["/src", "/src/auth", "/src/cart"]
    raw = who["agent"].get(f"{REPO}/items", params={**API, "path": "/README.md", "$format": "octetStream"})
    assert raw.status_code == 200 and raw.content.startswith(b"# storefront-web")
    message = service_error(who["agent"].get(f"{REPO}/items", params={**API, "path": "/nope.txt"}), 404,
                            "GitItemNotFoundException", "TF401174")
    assert "/nope.txt" in message
    service_error(who["agent"].get(f"{REPO}/items", params={**API, "path": "/README.md",
                                                            "versionDescriptor.version": "ghost",
                                                            "versionDescriptor.versionType": "branch"}),
                  404, "GitUnresolvableToCommitException", "TF401175")


def test_a_push_creates_a_branch_from_a_base_authored_by_the_token_principal(sandbox, fresh):
    agent = fresh["agent"]
    base = agent.tip("Storefront", "storefront-web")
    fixed = "LOGIN_TIMEOUT_SECONDS = 30\n"
    body = push_body("fix/login-timeout", base, [edit("/src/auth/session.py", fixed),
                                                 edit("/docs/timeouts.md", "# Timeouts\n", "add")],
                     "Raise the login timeout to 30 seconds")
    body["commits"][0]["author"] = {"name": "Someone Else", "email": "else@contoso.com"}  # ignored: the token wins
    push = agent.ok("POST", f"{REPO}/pushes", 201, json=body)
    commit = push["commits"][0]
    assert commit["author"]["email"] == AGENT_UPN and commit["committer"]["email"] == AGENT_UPN
    assert commit["author"]["name"] == "Orders Agent (agent user)"
    assert push["pushedBy"]["uniqueName"] == AGENT_UPN
    assert push["refUpdates"] == [{"repositoryId": push["repository"]["id"], "name": "refs/heads/fix/login-timeout",
                                   "oldObjectId": base, "newObjectId": commit["commitId"]}]
    assert agent.tip("Storefront", "storefront-web", "fix/login-timeout") == commit["commitId"]
    assert agent.tip("Storefront", "storefront-web") == base  # main did not move
    detail = agent.ok("GET", f"{REPO}/commits/{commit['commitId']}")
    assert detail["parents"] == [base] and detail["comment"] == "Raise the login timeout to 30 seconds"
    on_branch = agent.ok("GET", f"{REPO}/items", params={**API, "path": "/src/auth/session.py", "includeContent":
                                                         "true", "versionDescriptor.version": "fix/login-timeout"})
    assert on_branch["content"] == fixed and on_branch["objectId"] == _git_blob_id(fixed.encode())
    on_main = agent.ok("GET", f"{REPO}/items", params={**API, "path": "/src/auth/session.py",
                                                       "includeContent": "true"})
    assert "LOGIN_TIMEOUT_SECONDS = 5" in on_main["content"]
    history = agent.ok("GET", f"{REPO}/commits", params={**API, "searchCriteria.itemVersion.version":
                                                         "fix/login-timeout"})
    assert [c["commitId"] for c in history["value"]] == [commit["commitId"], base]
    listed = agent.ok("GET", f"{REPO}/pushes")
    assert listed["value"][0]["pushId"] == push["pushId"]
    assert agent.ok("GET", f"{REPO}/pushes/{push['pushId']}")["commits"][0]["commitId"] == commit["commitId"]
    state = _repo_state(sandbox)
    assert state["commits"][commit["commitId"]]["author"] == AGENT_UPN
    assert state["pushes"][-1]["pushed_by"] == AGENT_UPN
    pushes = [e for e in sandbox.requests(kind="devops") if e["method"] == "POST"]
    assert [(e["operation"], e["status"], e["token_claims"]["upn"]) for e in pushes] == [
        ("AzureDevOps/git/repositories/pushes/write", 201, AGENT_UPN)]


def test_a_push_whose_base_moved_is_a_conflict_and_leaves_nothing(sandbox, fresh):
    agent = fresh["agent"]
    base = agent.tip("Storefront", "storefront-web")
    agent.ok("POST", f"{REPO}/pushes", 201, json=push_body("work", base, [edit("/README.md", "one\n")]))
    before = _repo_state(sandbox)
    stale = push_body("work", base, [edit("/README.md", "two\n")])
    message = service_error(agent.post(f"{REPO}/pushes", json=stale), 409, "GitReferenceStaleException", "TF401028")
    assert "refs/heads/work" in message
    taken = push_body("main", ZERO, [edit("/new.txt", "x\n", "add")])  # "new branch" that exists
    service_error(agent.post(f"{REPO}/pushes", json=taken), 409, "GitReferenceStaleException", "TF401028")
    after = _repo_state(sandbox)
    assert after["refs"] == before["refs"] and after["objects"] == before["objects"]
    assert len(after["pushes"]) == len(before["pushes"])


def test_a_failed_push_is_atomic_no_ref_moves_and_no_object_is_kept(sandbox, fresh):
    agent = fresh["agent"]
    base = agent.tip("Storefront", "storefront-web")
    before = _repo_state(sandbox)
    body = {"refUpdates": [{"name": "refs/heads/half", "oldObjectId": base}],
            "commits": [{"comment": "good", "changes": [edit("/good.txt", "good\n", "add")]},
                        {"comment": "bad", "changes": [edit("/src/missing.py", "x\n")]}]}
    service_error(agent.post(f"{REPO}/pushes", json=body), 404, "GitItemNotFoundException", "TF401174")
    after = _repo_state(sandbox)
    assert after["refs"] == before["refs"] and after["objects"] == before["objects"]
    assert agent.tip("Storefront", "storefront-web", "half") == ZERO
    good_blob = _git_blob_id(b"good\n")
    assert all(good_blob not in files.values() for files in after["files"].values())


@pytest.mark.parametrize("change, status, key", [
    ({"changeType": "rename", "item": {"path": "/README.md"}}, 400, "InvalidArgumentValueException"),
    (edit("/README.md", "dup\n", "add"), 400, "InvalidArgumentValueException"),
    ({"changeType": "add", "item": {"path": "/bin.dat"}, "newContent": {"content": "!!notbase64",
                                                                        "contentType": "base64encoded"}},
     400, "InvalidArgumentValueException"),
    ({"changeType": "add", "item": {"path": "/x.txt"}}, 400, "InvalidArgumentValueException"),
    (edit("/../etc/passwd", "x", "add"), 400, "InvalidArgumentValueException"),
    ({"changeType": "delete", "item": {"path": "/ghost.txt"}}, 404, "GitItemNotFoundException"),
])
def test_invalid_changes_are_refused_with_a_clear_message(fresh, change, status, key):
    agent = fresh["agent"]
    base = agent.tip("Storefront", "storefront-web")
    service_error(agent.post(f"{REPO}/pushes", json=push_body("bad", base, [change])), status, key)
    assert agent.tip("Storefront", "storefront-web", "bad") == ZERO


def test_ref_names_old_object_ids_and_body_shapes_are_validated(fresh):
    agent = fresh["agent"]
    base = agent.tip("Storefront", "storefront-web")
    message = service_error(agent.post(f"{REPO}/pushes", json=push_body("has space", base, [edit("/a", "a", "add")])),
                            400, "InvalidArgumentValueException", "TF401025")
    assert "not a valid name" in message
    service_error(agent.post(f"{REPO}/pushes", json=push_body("x", "abc", [edit("/a", "a", "add")])), 400,
                  "InvalidArgumentValueException")
    service_error(agent.post(f"{REPO}/pushes", json=push_body("x", "f" * 40, [edit("/a", "a", "add")])), 400,
                  "InvalidArgumentValueException", "TF401035")
    service_error(agent.post(f"{REPO}/pushes", json={"refUpdates": [], "commits": []}), 400,
                  "InvalidArgumentValueException")
    service_error(agent.post(f"{REPO}/pushes", content=b"{not json", headers={"content-type": "application/json"}),
                  400, "VssPropertyValidationException")


def test_binary_content_and_an_orphan_branch(fresh):
    agent = fresh["agent"]
    data = bytes(range(256))
    change = {"changeType": "add", "item": {"path": "/assets/logo.bin"},
              "newContent": {"content": base64.b64encode(data).decode(), "contentType": "base64encoded"}}
    push = agent.ok("POST", f"{REPO}/pushes", 201, json=push_body("orphan", ZERO, [change]))
    commit = agent.ok("GET", f"{REPO}/commits/{push['commits'][0]['commitId']}")
    assert commit["parents"] == []
    tree = agent.ok("GET", f"{REPO}/items", params={**API, "path": "/", "recursionLevel": "Full",
                                                    "versionDescriptor.version": "orphan"})
    assert [i["path"] for i in tree["value"] if i["gitObjectType"] == "blob"] == ["/assets/logo.bin"]
    raw = agent.get(f"{REPO}/items", params={**API, "path": "/assets/logo.bin", "download": "true",
                                             "versionDescriptor.version": "orphan"})
    assert raw.content == data


def test_no_code_writes_without_code_access(who):
    base = who["developer"].tip("Storefront", "storefront-web")
    service_error(who["reader"].post(f"{REPO}/pushes", json=push_body("r", base, [edit("/a", "a", "add")])), 404,
                  "GitRepositoryNotFoundException", "TF401019")
    service_error(who["agent"].post("Platform/_apis/git/repositories/platform-infra/pushes",
                                    json=push_body("r", base, [edit("/a", "a", "add")])), 404,
                  "ProjectDoesNotExistWithNameException", "TF200016")
    assert who["developer"].tip("Storefront", "storefront-web", "r") == ZERO


def test_unauthenticated_push_changes_nothing(sandbox, fresh):
    base = fresh["developer"].tip("Storefront", "storefront-web")
    before = _repo_state(sandbox)
    response = DevOps(sandbox, None).post(f"{REPO}/pushes", json=push_body("anon", base, [edit("/a", "a", "add")]))
    service_error(response, 401, "UnauthorizedRequestException", "TF400813")
    assert _repo_state(sandbox)["objects"] == before["objects"]
