"""Adversarial arguments for the devops_* tools: no value can move a request out of the project or repository it names.

For arbitrary strings as project, repository, branch, file path and work item type, a tool either
refuses the arguments (``ToolInputError``, before anything is planned or sent) or plans requests
that the guard maps to the operation the tool declares, at exactly the scope the arguments name,
in the configured organization, on the configured host. So a policy fence on
``/organizations/contoso/projects/Storefront`` cannot be walked around with ``..``, escapes, a GUID,
a second segment hidden in a name, or a query hidden in a path. (Scopes hold names as the path
writes them: ``quote_segment``.) ``plan`` sends nothing (checked).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from azure_agent_mcp.policy import Endpoints, UnmappableRequestError, map_request
from azure_agent_mcp.policy.urlpath import quote_segment
from azure_agent_mcp.tools import catalog
from azure_agent_mcp.tools.base import ToolInputError

TOOLS = {tool.name: tool for tool in catalog(devops=True) if tool.name.startswith("devops_")}
ORG = "/organizations/contoso"
NASTY = st.one_of(
    st.text(min_size=0, max_size=40),
    st.text(alphabet="./\\%?#&=$@:;_ -~Aa0%2e%2f", min_size=1, max_size=20),
    st.sampled_from(["..", ".", "Storefront/..", "Storefront/../Platform", "Platform%2f..", "Storefront?project=Platform",
                     "Storefront#x", "_apis", "Store front", "2b9c0a7e-1d3f-4a5b-8c6d-7e8f9a0b1c2d",
                     "{2b9c0a7e-1d3f-4a5b-8c6d-7e8f9a0b1c2d}", "Storefront\x00", "Störefront", "CON", "a" * 65]),
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def azure(sandbox, tmp_path_factory):
    from server_helpers import make_runtime

    runtime = make_runtime(sandbox, tmp_path_factory.mktemp("devops-props") / "audit.jsonl", "unrestricted",
                           devops_organization="contoso")
    yield runtime.azure_for(runtime.default_session)
    runtime.close()


@pytest.fixture(scope="module")
def endpoints(azure) -> Endpoints:
    return Endpoints.from_environment(azure.env, "contoso")


@pytest.fixture(scope="module", autouse=True)
def sends_nothing(sandbox):
    before = sandbox.last_seq()
    yield
    assert sandbox.requests(since=before) == [], "plan() sent a request"


def _planned(azure: Any, endpoints: Endpoints, tool: str, **arguments: Any) -> list[Any] | None:
    try:
        planned = TOOLS[tool].plan(azure, **arguments)
    except ToolInputError:
        return None
    out = []
    for request in planned:
        parts = urlsplit(request.url)
        host = urlsplit(azure.env.devops_endpoint if "/vssps/" not in request.url else azure.env.devops_vssps_endpoint)
        assert (parts.scheme, parts.netloc) == (host.scheme, host.netloc), request.url
        assert not parts.fragment and "#" not in request.url
        try:
            out.append(map_request(request.method, request.url, endpoints))
        except UnmappableRequestError as exc:
            raise AssertionError(f"{tool}({arguments!r}) planned what the guard cannot map: {exc}") from None
    return out


def _declared(tool: str) -> set[str]:
    return {op.operation for op in TOOLS[tool].operations}


@SETTINGS
@given(project=NASTY)
@example(project="Storefront")
def test_a_project_argument_is_the_scope_or_refused(azure, endpoints, project):
    mapped = _planned(azure, endpoints, "devops_repo_list", project=project)
    if mapped is None:
        return
    [request] = mapped
    assert request.plane == "devops" and request.operation == "AzureDevOps/git/repositories/read"
    assert request.scope == f"{ORG}/projects/{quote_segment(project)}", (project, request.scope)


@SETTINGS
@given(repo=NASTY, prefix=st.one_of(st.none(), NASTY))
@example(repo="storefront-web", prefix="fix/")
def test_a_repository_argument_is_the_scope_or_refused(azure, endpoints, repo, prefix):
    mapped = _planned(azure, endpoints, "devops_branch_list", project="Storefront", repo=repo, prefix=prefix)
    if mapped is None:
        return
    [request] = mapped
    assert request.operation in _declared("devops_branch_list")
    assert request.scope == f"{ORG}/projects/Storefront/repositories/{quote_segment(repo)}", (repo, request.scope)


@SETTINGS
@given(type_=NASTY, project=st.sampled_from(["Storefront", "Platform"]))
@example(type_="User Story", project="Storefront")
@example(type_="Bug/../../../_apis/projects", project="Storefront")
def test_a_work_item_type_never_leaves_the_project(azure, endpoints, type_, project):
    mapped = _planned(azure, endpoints, "devops_work_item_create", project=project, type=type_, title="t")
    if mapped is None:
        return
    [request] = mapped
    assert request.operation == "AzureDevOps/wit/workItems/write" and request.scope == f"{ORG}/projects/{project}"


@SETTINGS
@given(branch=NASTY, path=NASTY, base=st.one_of(st.none(), NASTY))
@example(branch="fix/login-timeout", path="/src/auth/session.py", base=None)
@example(branch="main", path="/../../Platform/_apis/x", base="main")
def test_a_push_acts_on_its_repository_only(azure, endpoints, branch, path, base):
    mapped = _planned(azure, endpoints, "devops_push", project="Storefront", repo="storefront-web", branch=branch,
                      message="m", base=base, changes=[{"path": path, "content": "x"}])
    if mapped is None:
        return
    assert {m.scope for m in mapped} == {f"{ORG}/projects/Storefront/repositories/storefront-web"}
    assert mapped[-1].operation == "AzureDevOps/git/repositories/pushes/write"
    assert {m.operation for m in mapped[:-1]} <= {"AzureDevOps/git/repositories/refs/read",
                                                  "AzureDevOps/git/repositories/read",
                                                  "AzureDevOps/git/repositories/items/read"}


@SETTINGS
@given(reviewer=NASTY, number=st.integers(min_value=-5, max_value=10**12), thread=st.one_of(st.none(), st.integers(-5, 10**6)))
@example(reviewer="dev@contoso.com", number=1, thread=1)
def test_pull_request_arguments_stay_in_the_repository(azure, endpoints, reviewer, number, thread):
    created = _planned(azure, endpoints, "devops_pr_create", project="Storefront", repo="storefront-web",
                       source_branch="fix/x", title="t", target_branch="main", reviewers=[reviewer])
    if created is not None:
        identities, pull = created
        assert identities.operation == "AzureDevOps/identities/read" and identities.scope == ORG
        assert pull.operation == "AzureDevOps/git/repositories/pullRequests/write"
        assert pull.scope == f"{ORG}/projects/Storefront/repositories/storefront-web"
    replied = _planned(azure, endpoints, "devops_pr_thread_reply", project="Storefront", repo="storefront-web",
                       pull_request_id=number, content="c", thread_id=thread)
    if replied is None:
        assert not 1 <= number < 2**31 or (thread is not None and not 1 <= thread < 2**31)
        return
    [reply] = replied
    assert reply.scope == f"{ORG}/projects/Storefront/repositories/storefront-web"
    assert reply.operation in _declared("devops_pr_thread_reply")


def test_every_devops_tool_plans_what_it_declares(azure, endpoints):
    """Each tool's plan maps to operations it declares or reads it makes on the way (never another write)."""
    calls = {
        "devops_project_list": {}, "devops_repo_list": {"project": "Storefront"},
        "devops_work_item_get": {"project": "Storefront", "id": 1},
        "devops_work_item_query": {"project": "Storefront", "wiql": "SELECT [System.Id] FROM WorkItems"},
        "devops_work_item_create": {"project": "Storefront", "type": "Bug", "title": "t"},
        "devops_work_item_update": {"project": "Storefront", "id": 1, "patch": [{"op": "remove", "path": "/fields/x"}]},
        "devops_work_item_comment": {"project": "Storefront", "id": 1, "text": "t"},
        "devops_branch_list": {"project": "Storefront", "repo": "storefront-web"},
        "devops_file_get": {"project": "Storefront", "repo": "storefront-web", "path": "/README.md"},
        "devops_push": {"project": "Storefront", "repo": "storefront-web", "branch": "b", "message": "m",
                        "changes": [{"path": "/a", "content": "x"}]},
        "devops_pr_create": {"project": "Storefront", "repo": "storefront-web", "source_branch": "b", "title": "t",
                             "reviewers": ["dev@contoso.com"]},
        "devops_pr_get": {"project": "Storefront", "repo": "storefront-web", "pull_request_id": 1},
        "devops_pr_threads_list": {"project": "Storefront", "repo": "storefront-web", "pull_request_id": 1},
        "devops_pr_thread_reply": {"project": "Storefront", "repo": "storefront-web", "pull_request_id": 1,
                                   "content": "c", "thread_id": 2},
    }
    assert set(calls) == set(TOOLS)
    for tool, arguments in calls.items():
        mapped = _planned(azure, endpoints, tool, **arguments)
        assert mapped, tool
        operations = {m.operation for m in mapped}
        writes = {op for op in operations if not op.endswith("/read")}
        assert writes <= _declared(tool), (tool, writes)
        assert operations & _declared(tool), (tool, operations)
        assert TOOLS[tool].read_only == (not writes), tool
