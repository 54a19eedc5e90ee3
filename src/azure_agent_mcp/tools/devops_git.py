"""Azure DevOps Git without a git binary: branches, a file at a ref, and pushes through the REST pushes API.

A push is one ``POST .../pushes``: a ref update (``oldObjectId`` = the commit the branch is at, or
for a new branch the base it starts from) and one commit with the file changes. The service
applies it atomically: when the branch moved meanwhile (the ``oldObjectId`` is stale) it answers
409 and neither the branch nor the commit exists, so a failed push leaves nothing behind.
"""

from __future__ import annotations

import re
from typing import Any

from azure_agent_mcp.tools.base import AzureTool, DeclaredOperation, PlannedRequest, ToolInputError, ToolOutput
from azure_agent_mcp.tools.clients import AzureSession
from azure_agent_mcp.tools.devops import REPOSITORIES_READ, identity
from azure_agent_mcp.tools.devops_client import DevOpsRequestError
from azure_agent_mcp.tools.schemas import LISTING, strings

REFS_READ = "AzureDevOps/git/repositories/refs/read"
ITEMS_READ = "AzureDevOps/git/repositories/items/read"
PUSHES_WRITE = "AzureDevOps/git/repositories/pushes/write"

MAX_CHANGES = 100
MAX_FILE_BYTES = 1024 * 1024
_COMMIT = re.compile(r"[0-9a-f]{40}")
_BRANCH = re.compile(r"(?!/)(?!.*(?:\.\.|//|@\{|/\.|\.lock$|/$|\.$))[A-Za-z0-9._/-]{1,200}", re.ASCII)
_FILE_PATH = re.compile(r"(?:/[\x20-\x7e]+)+", re.ASCII)


def branch_name(value: str, what: str = "branch") -> str:
    name = value[len("refs/heads/"):] if isinstance(value, str) and value.startswith("refs/heads/") else value
    if not isinstance(name, str) or not _BRANCH.fullmatch(name):
        raise ToolInputError(f"'{str(value)[:100]}' is not a usable {what} name.",
                             hint="Use letters, digits, '.', '_', '-' and '/' (e.g. fix/login-timeout); no '..', "
                             "'//', '@{', and no trailing '/', '.' or '.lock'.")
    return name


def file_path(value: str) -> str:
    path = value if isinstance(value, str) and value.startswith("/") else "/" + str(value)
    segments = path.split("/")[1:]
    if (not _FILE_PATH.fullmatch(path) or len(path) > 400 or "\\" in path
            or any(s in ("", ".", "..") or s != s.strip() for s in segments)):
        raise ToolInputError(f"'{str(value)[:100]}' is not a file path in a repository.",
                             hint="Use a path from the repository root such as /src/auth/session.py (printable "
                             "ASCII, no '.' or '..' segments).")
    return path


def repo_hint(project: str, repo: str) -> str:
    return (f"No repository '{repo}' visible in '{project}' (a Stakeholder cannot read code): devops_repo_list shows "
            "the repositories, devops_project_list the projects.")


# -- devops_branch_list --------------------------------------------------------------------------


def _refs_url(azure: AzureSession, project: str, repo: str, prefix: str = "") -> str:
    return azure.devops().repo_url(project, repo, "refs", {"filter": "heads/" + prefix})


def _branches(azure: AzureSession, project: str, repo: str, prefix: str = "") -> list[dict[str, Any]]:
    body = azure.devops().send("GET", _refs_url(azure, project, repo, prefix), hint={404: repo_hint(project, repo)}).body or {}
    out = []
    for ref in body.get("value", []):
        name = str(ref.get("name", ""))
        if name.startswith("refs/heads/"):
            entry = {"name": name[len("refs/heads/"):], "objectId": ref.get("objectId")}
            creator = identity(ref.get("creator"))
            if creator:
                entry["creator"] = creator.get("uniqueName") or creator.get("displayName")
            out.append(entry)
    return out


def devops_branch_list(azure: AzureSession, project: str, repo: str, prefix: str | None = None) -> ToolOutput:
    items = _branches(azure, project, repo, branch_name(prefix, "prefix") if prefix else "")
    return ToolOutput(f"{len(items)} branch(es) in {project}/{repo}.", {"project": project, "repo": repo, "items": items})


def _plan_branch_list(azure: AzureSession, project: str, repo: str, prefix: str | None = None) -> list[PlannedRequest]:
    return [PlannedRequest("GET", _refs_url(azure, project, repo, branch_name(prefix, "prefix") if prefix else ""))]


# -- devops_file_get -------------------------------------------------------------------------------


def _item_url(azure: AzureSession, project: str, repo: str, path: str, version: str, kind: str) -> str:
    return azure.devops().repo_url(project, repo, "items", {
        "path": file_path(path), "versionDescriptor.version": version, "versionDescriptor.versionType": kind,
        "includeContent": "true", "$format": "json",
    })


def devops_file_get(azure: AzureSession, project: str, repo: str, path: str, branch: str | None = None) -> ToolOutput:
    ref = branch_name(branch) if branch else _default_branch(azure, project, repo)
    try:
        body = azure.devops().send("GET", _item_url(azure, project, repo, path, ref, "branch")).body or {}
    except DevOpsRequestError as exc:
        if exc.status == 404:
            exc.hint = (f"No file {file_path(path)} on branch {ref}, or no such branch (devops_branch_list shows the "
                        f"branches); or {repo_hint(project, repo)}")
        raise
    content = body.get("content")
    data = {"path": body.get("path") or file_path(path), "branch": ref, "objectId": body.get("objectId"),
            "commitId": body.get("commitId"), "content": content if isinstance(content, str) else ""}
    return ToolOutput(f"{data['path']} at {ref} ({len(data['content'])} characters).",
                      {k: v for k, v in data.items() if v is not None})


def _plan_file_get(azure: AzureSession, project: str, repo: str, path: str, branch: str | None = None) -> list[PlannedRequest]:
    plan = [] if branch else [PlannedRequest("GET", _repo_url(azure, project, repo))]
    return [*plan, PlannedRequest("GET", _item_url(azure, project, repo, path, branch_name(branch) if branch else "main",
                                                   "branch"))]


def _repo_url(azure: AzureSession, project: str, repo: str) -> str:
    return azure.devops().repo_url(project, repo)


def _default_branch(azure: AzureSession, project: str, repo: str) -> str:
    body = azure.devops().send("GET", _repo_url(azure, project, repo), hint={404: repo_hint(project, repo)}).body or {}
    default = str(body.get("defaultBranch") or "")
    if not default:
        raise ToolInputError(f"Repository {repo} has no default branch (it is empty).",
                             hint="Name the branch explicitly.")
    return branch_name(default)


# -- devops_push -----------------------------------------------------------------------------------


def _checked_changes(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not changes:
        raise ToolInputError("The push has no changes.", hint=CHANGES_HINT)
    if len(changes) > MAX_CHANGES:
        raise ToolInputError(f"The push has {len(changes)} changes; at most {MAX_CHANGES}.")
    seen: set[str] = set()
    checked = []
    for index, change in enumerate(changes):
        if not isinstance(change, dict) or not isinstance(change.get("path"), str):
            raise ToolInputError(f"Change {index} needs a path.", hint=CHANGES_HINT)
        path = file_path(change["path"])
        if path.lower() in seen:
            raise ToolInputError(f"Change {index} names {path} a second time.", hint="One change per file.")
        seen.add(path.lower())
        content = change.get("content")
        if content is not None and not isinstance(content, str):
            raise ToolInputError(f"Change {index}: content must be the file's text.", hint=CHANGES_HINT)
        if content is not None and len(content.encode("utf-8")) > MAX_FILE_BYTES:
            raise ToolInputError(f"Change {index}: {path} is over {MAX_FILE_BYTES} bytes.")
        checked.append({"path": path, "content": content})
    return checked


CHANGES_HINT = ('changes is a list like [{"path": "/src/app.py", "content": "<the whole new file>"}]; content null '
                "deletes the file.")


def _pushes_url(azure: AzureSession, project: str, repo: str) -> str:
    return azure.devops().repo_url(project, repo, "pushes")


def _tip(azure: AzureSession, project: str, repo: str, branch: str) -> str | None:
    for entry in _branches(azure, project, repo, branch):
        if entry["name"] == branch:
            return str(entry["objectId"])
    return None


def _exists(azure: AzureSession, project: str, repo: str, path: str, commit: str) -> bool:
    try:
        azure.devops().send("GET", _item_url(azure, project, repo, path, commit, "commit"))
    except DevOpsRequestError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _push_hints(project: str, repo: str, branch: str) -> dict[int, str]:
    nothing = "Nothing was pushed (a push applies whole or not at all). "
    return {
        409: nothing + f"Branch {branch} moved since the commit the push expected: devops_branch_list shows its tip; "
        "build the change on that and push again.",
        400: nothing + "Check the changes: a file deleted must exist at the branch's commit, and a base given as a "
        "commit id must exist.",
        403: nothing + "The identity lacks the Contribute permission on this repository.",
        404: nothing + repo_hint(project, repo),
    }


def devops_push(
    azure: AzureSession,
    project: str,
    repo: str,
    branch: str,
    changes: list[dict[str, Any]],
    message: str,
    base: str | None = None,
    expected_commit: str | None = None,
) -> ToolOutput:
    branch = branch_name(branch)
    files = _checked_changes(changes)
    if not message.strip():
        raise ToolInputError("A commit needs a message.")
    if expected_commit is not None and not _COMMIT.fullmatch(expected_commit):
        raise ToolInputError(f"'{expected_commit[:60]}' is not a commit id (40 lowercase hex digits).")
    tip = _tip(azure, project, repo, branch)
    created = tip is None
    if created:
        start = base or _default_branch(azure, project, repo)
        if _COMMIT.fullmatch(start):
            parent = start
        else:
            found = _tip(azure, project, repo, branch_name(start, "base branch"))
            if found is None:
                raise ToolInputError(f"The base branch '{start}' does not exist in {project}/{repo}; nothing was pushed.",
                                     hint="devops_branch_list shows the branches; or pass a commit id as base.")
            parent = found
        parent = expected_commit or parent
    else:
        if base is not None:
            raise ToolInputError(f"Branch {branch} exists already; base applies only to a new branch. Nothing was "
                                 "pushed.", hint="Push to it without base (expected_commit pins its tip), or name a "
                                 "new branch.")
        parent = expected_commit or str(tip)
    commit_changes = []
    for change in files:
        if change["content"] is None:
            commit_changes.append({"changeType": "delete", "item": {"path": change["path"]}})
            continue
        kind = "edit" if _exists(azure, project, repo, change["path"], parent) else "add"
        commit_changes.append({"changeType": kind, "item": {"path": change["path"]},
                               "newContent": {"content": change["content"], "contentType": "rawtext"}})
    body = {"refUpdates": [{"name": f"refs/heads/{branch}", "oldObjectId": parent}],
            "commits": [{"comment": message, "changes": commit_changes}]}
    answer = azure.devops().send("POST", _pushes_url(azure, project, repo), body, hint=_push_hints(project, repo, branch)).body or {}
    commits = answer.get("commits") or [{}]
    commit = commits[-1] if isinstance(commits[-1], dict) else {}
    author = commit.get("author") or {}
    data = {
        "project": project, "repo": repo, "branch": branch, "created": created, "parent": parent,
        "commitId": commit.get("commitId") or ((answer.get("refUpdates") or [{}])[0].get("newObjectId")),
        "pushId": answer.get("pushId"),
        "pushedBy": identity(answer.get("pushedBy")),
        "author": {k: author[k] for k in ("name", "email") if author.get(k)} or None,
        "changes": [{"path": c["item"]["path"], "changeType": c["changeType"]} for c in commit_changes],
    }
    who = (data["pushedBy"] or {}).get("uniqueName") or "this identity"
    summary = (f"Pushed {len(commit_changes)} change(s) to {'new ' if created else ''}branch {branch} as {who} "
               f"(commit {str(data['commitId'])[:12]}).")
    return ToolOutput(summary, {k: v for k, v in data.items() if v is not None})


def _plan_push(
    azure: AzureSession, project: str, repo: str, branch: str, changes: list[dict[str, Any]], message: str,
    base: str | None = None, expected_commit: str | None = None,
) -> list[PlannedRequest]:
    branch = branch_name(branch)
    files = _checked_changes(changes)
    plan = [PlannedRequest("GET", _refs_url(azure, project, repo, branch))]
    if base is None:
        plan.append(PlannedRequest("GET", _repo_url(azure, project, repo)))
    plan.extend(PlannedRequest("GET", _item_url(azure, project, repo, f["path"], "0" * 40, "commit")) for f in files[:1])
    plan.append(PlannedRequest("POST", _pushes_url(azure, project, repo)))
    return plan


TOOLS = (
    AzureTool(
        name="devops_branch_list",
        description="A repository's branches and their commit ids.",
        run=devops_branch_list,
        plan=_plan_branch_list,
        operations=(DeclaredOperation(REFS_READ),),
        output_schema=LISTING,
    ),
    AzureTool(
        name="devops_file_get",
        description="A file's text at a branch (default: the default branch).",
        run=devops_file_get,
        plan=_plan_file_get,
        operations=(DeclaredOperation(ITEMS_READ), DeclaredOperation(REPOSITORIES_READ)),
        output_schema=strings("content", required=("content",)),
    ),
    AzureTool(
        name="devops_push",
        description="Commit [{path, content}] (null content deletes) to a branch; a new branch starts at base "
                    "(default branch).",
        run=devops_push,
        plan=_plan_push,
        # the operation every call needs (declared operations are alternatives: a read here would keep the tool
        # listed under read-only); its reads of refs, the repository and items are in its plan
        operations=(DeclaredOperation(PUSHES_WRITE),),
        read_only=False,
        idempotent=False,
        output_schema=strings("branch", "commitId", required=("commitId",)),
    ),
)
