"""Azure DevOps pull requests: create (reviewers by UPN or email, linked work items), get, threads, replies.

Reviewers are resolved through the organization's identities API before anything is created: a
reviewer who does not resolve to exactly one identity stops the call with nothing sent to the
pull requests API, rather than a pull request with a reviewer missing.
"""

from __future__ import annotations

import re
from typing import Any

from azure_agent_mcp.tools.base import AzureTool, DeclaredOperation, PlannedRequest, ToolInputError, ToolOutput
from azure_agent_mcp.tools.clients import AzureSession
from azure_agent_mcp.tools.devops import identity
from azure_agent_mcp.tools.devops_git import _default_branch, _repo_url, branch_name, repo_hint
from azure_agent_mcp.tools.schemas import INTEGER, LISTING, STRING, obj

PRS_READ = "AzureDevOps/git/repositories/pullRequests/read"
PRS_WRITE = "AzureDevOps/git/repositories/pullRequests/write"
THREADS_READ = "AzureDevOps/git/repositories/pullRequests/threads/read"
THREADS_WRITE = "AzureDevOps/git/repositories/pullRequests/threads/write"
THREAD_COMMENTS_WRITE = "AzureDevOps/git/repositories/pullRequests/threads/comments/write"

MAX_ID = 2**31 - 1  # Azure DevOps ids are 32-bit
MAX_REVIEWERS = 20
MAX_LINKED = 50
MAX_TEXT = 32 * 1024
_UPN = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", re.ASCII)
_PR = obj(("pullRequestId",), pullRequestId=INTEGER, status=STRING)


class ReviewerNotFound(ToolInputError):
    code = "ReviewerNotFound"


def _number(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ToolInputError(f"{value!r} is not a {what}.", hint=f"A {what} is a number from 1 to {MAX_ID}.")
    return value


def _text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ToolInputError(f"The {what} is empty.")
    if len(value) > MAX_TEXT:
        raise ToolInputError(f"The {what} is {len(value)} characters; at most {MAX_TEXT}.")
    return value


def _upn(value: str) -> str:
    if not isinstance(value, str) or not _UPN.fullmatch(value):
        raise ReviewerNotFound(f"Reviewer '{str(value)[:80]}' is not a user principal name or email address.",
                               hint="Name reviewers by UPN or email, e.g. dev@contoso.com.")
    return value


def _pr_view(pr: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {k: pr[k] for k in ("pullRequestId", "title", "description", "status", "isDraft",
                                                  "sourceRefName", "targetRefName", "mergeStatus", "creationDate", "url")
                            if pr.get(k) is not None}
    view["createdBy"] = identity(pr.get("createdBy"))
    view["reviewers"] = [{**(identity(r) or {}), "vote": r.get("vote", 0)} for r in pr.get("reviewers") or []
                         if isinstance(r, dict)]
    view["workItems"] = [int(w["id"]) for w in pr.get("workItemRefs") or []
                         if isinstance(w, dict) and str(w.get("id", "")).isdigit()]
    source = pr.get("lastMergeSourceCommit")
    if isinstance(source, dict) and source.get("commitId"):
        view["sourceCommit"] = source["commitId"]
    repository = pr.get("repository")
    if isinstance(repository, dict) and repository.get("name"):
        view["repository"] = repository["name"]
    return {k: v for k, v in view.items() if v is not None}


# -- devops_pr_create ------------------------------------------------------------------------------


def _identities_url(azure: AzureSession, upn: str) -> str:
    return azure.devops().vssps_url("identities", {"searchFilter": "General", "filterValue": upn})


def _resolve(azure: AzureSession, upn: str) -> str:
    body = azure.devops().send("GET", _identities_url(azure, upn)).body or {}
    found = [i for i in body.get("value") or [] if isinstance(i, dict) and i.get("id")]
    wanted = upn.lower()

    def names(entry: dict[str, Any]) -> set[str]:
        props = entry.get("properties") or {}
        values = {str((props.get(k) or {}).get("$value", "")).lower() for k in ("Mail", "Account")}
        return values | {str(entry.get("uniqueName", "")).lower()}

    exact = [i for i in found if wanted in names(i)] or (found if len(found) == 1 else [])
    if len(exact) != 1:
        which = "no identity" if not found else f"{len(found)} identities"
        raise ReviewerNotFound(
            f"Reviewer '{upn}' matches {which} in organization {azure.devops().organization}; no pull request was "
            "created.", hint="Check the spelling; a reviewer must be a user of the organization.")
    return str(exact[0]["id"])


def _prs_url(azure: AzureSession, project: str, repo: str) -> str:
    return azure.devops().repo_url(project, repo, "pullRequests")


def _checked_lists(reviewers: list[str] | None, work_items: list[int] | None) -> tuple[list[str], list[int]]:
    people = [_upn(r) for r in reviewers or []]
    if len(people) > MAX_REVIEWERS:
        raise ToolInputError(f"{len(people)} reviewers; at most {MAX_REVIEWERS}.")
    linked = [_number(w, "work item id") for w in work_items or []]
    if len(linked) > MAX_LINKED:
        raise ToolInputError(f"{len(linked)} linked work items; at most {MAX_LINKED}.")
    return people, linked


def devops_pr_create(
    azure: AzureSession,
    project: str,
    repo: str,
    source_branch: str,
    title: str,
    target_branch: str | None = None,
    description: str | None = None,
    reviewers: list[str] | None = None,
    work_items: list[int] | None = None,
) -> ToolOutput:
    source = branch_name(source_branch)
    people, linked = _checked_lists(reviewers, work_items)
    _text(title, "title")
    target = branch_name(target_branch) if target_branch else _default_branch(azure, project, repo)
    if target == source:
        raise ToolInputError(f"The source and target branch are both {source}.", hint="Push the change to a new branch first.")
    ids = [_resolve(azure, person) for person in people]
    body: dict[str, Any] = {
        "sourceRefName": f"refs/heads/{source}", "targetRefName": f"refs/heads/{target}", "title": title,
        "description": description or "",
        "reviewers": [{"id": i} for i in ids], "workItemRefs": [{"id": str(w)} for w in linked],
    }
    conflict = (f"Check that branch {source} exists (devops_push creates it), that no active pull request from {source} "
                f"into {target} exists already, and that the linked work items exist.")
    hint = {400: conflict, 409: conflict, 404: repo_hint(project, repo)}
    answer = azure.devops().send("POST", _prs_url(azure, project, repo), body, hint=hint).body or {}
    view = _pr_view(answer)
    who = (view.get("createdBy") or {}).get("uniqueName") or "this identity"
    return ToolOutput(f"Opened pull request {view.get('pullRequestId')} '{title}' ({source} -> {target}) as {who}, "
                      f"{len(view['reviewers'])} reviewer(s), {len(view['workItems'])} linked work item(s).", view)


def _plan_pr_create(azure: AzureSession, project: str, repo: str, source_branch: str, title: str,
                    target_branch: str | None = None, description: str | None = None,
                    reviewers: list[str] | None = None, work_items: list[int] | None = None,
                    ) -> list[PlannedRequest]:
    branch_name(source_branch)
    people, _ = _checked_lists(reviewers, work_items)
    plan = [] if target_branch else [PlannedRequest("GET", _repo_url(azure, project, repo))]
    plan.extend(PlannedRequest("GET", _identities_url(azure, p)) for p in people[:1])
    plan.append(PlannedRequest("POST", _prs_url(azure, project, repo)))
    return plan


# -- devops_pr_get -----------------------------------------------------------------------------------


def _pr_url(azure: AzureSession, project: str, repo: str, pull_request_id: int) -> str:
    number = _number(pull_request_id, "pull request id")
    return azure.devops().repo_url(project, repo, f"pullRequests/{number}", {"includeWorkItemRefs": "true"})


def _pr_hint(project: str, repo: str, pull_request_id: int) -> dict[int, str]:
    return {404: f"Pull request {pull_request_id} may not exist in {project}/{repo}; or {repo_hint(project, repo)}"}


def devops_pr_get(azure: AzureSession, project: str, repo: str, pull_request_id: int) -> ToolOutput:
    body = azure.devops().send("GET", _pr_url(azure, project, repo, pull_request_id),
                               hint=_pr_hint(project, repo, pull_request_id)).body or {}
    view = _pr_view(body)
    return ToolOutput(f"Pull request {view.get('pullRequestId')} '{view.get('title', '')}' is {view.get('status')}.", view)


def _plan_pr_get(azure: AzureSession, project: str, repo: str, pull_request_id: int) -> list[PlannedRequest]:
    return [PlannedRequest("GET", _pr_url(azure, project, repo, pull_request_id))]


# -- devops_pr_threads_list ------------------------------------------------------------------------


def _threads_url(azure: AzureSession, project: str, repo: str, pull_request_id: int) -> str:
    number = _number(pull_request_id, "pull request id")
    return azure.devops().repo_url(project, repo, f"pullRequests/{number}/threads")


def _comment_view(comment: dict[str, Any]) -> dict[str, Any]:
    view = {k: comment[k] for k in ("id", "parentCommentId", "content", "commentType", "publishedDate")
            if comment.get(k) is not None}
    view["author"] = identity(comment.get("author"))
    return {k: v for k, v in view.items() if v is not None}


def _thread_view(thread: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"id": thread.get("id"), "status": thread.get("status")}
    context = thread.get("threadContext")
    if isinstance(context, dict) and context.get("filePath"):
        view["filePath"] = context["filePath"]
    view["comments"] = [_comment_view(c) for c in thread.get("comments") or []
                        if isinstance(c, dict) and not c.get("isDeleted")]
    return {k: v for k, v in view.items() if v is not None}


def devops_pr_threads_list(azure: AzureSession, project: str, repo: str, pull_request_id: int) -> ToolOutput:
    body = azure.devops().send("GET", _threads_url(azure, project, repo, pull_request_id),
                               hint=_pr_hint(project, repo, pull_request_id)).body or {}
    items = [_thread_view(t) for t in body.get("value") or [] if isinstance(t, dict) and not t.get("isDeleted")]
    comments = sum(len(t["comments"]) for t in items)
    return ToolOutput(f"{len(items)} thread(s), {comments} comment(s) on pull request {pull_request_id}.",
                      {"pullRequestId": pull_request_id, "items": items})


def _plan_threads(azure: AzureSession, project: str, repo: str, pull_request_id: int) -> list[PlannedRequest]:
    return [PlannedRequest("GET", _threads_url(azure, project, repo, pull_request_id))]


# -- devops_pr_thread_reply ------------------------------------------------------------------------


def _reply_url(azure: AzureSession, project: str, repo: str, pull_request_id: int, thread_id: int | None) -> str:
    if thread_id is None:
        return _threads_url(azure, project, repo, pull_request_id)
    number = _number(pull_request_id, "pull request id")
    thread = _number(thread_id, "thread id")
    return azure.devops().repo_url(project, repo, f"pullRequests/{number}/threads/{thread}/comments")


def devops_pr_thread_reply(
    azure: AzureSession,
    project: str,
    repo: str,
    pull_request_id: int,
    content: str,
    thread_id: int | None = None,
) -> ToolOutput:
    _text(content, "reply")
    url = _reply_url(azure, project, repo, pull_request_id, thread_id)
    hint = _pr_hint(project, repo, pull_request_id)
    if thread_id is not None:
        hint = {404: f"Thread {thread_id} or pull request {pull_request_id} does not exist: devops_pr_threads_list shows "
                     "a pull request's threads."}
    if thread_id is None:  # a new thread with one comment
        body = {"comments": [{"parentCommentId": 0, "content": content, "commentType": 1}], "status": 1}
        answer = azure.devops().send("POST", url, body, hint=hint).body or {}
        thread = _thread_view(answer)
        comment = (thread.get("comments") or [{}])[0]
        data = {"pullRequestId": pull_request_id, "threadId": thread.get("id"), **comment}
    else:
        body = {"content": content, "parentCommentId": 1, "commentType": 1}  # a reply to the thread's first comment
        answer = azure.devops().send("POST", url, body, hint=hint).body or {}
        data = {"pullRequestId": pull_request_id, "threadId": thread_id, **_comment_view(answer)}
    who = (data.get("author") or {}).get("uniqueName") or "this identity"
    where = f"thread {data.get('threadId')}" if thread_id else f"new thread {data.get('threadId')}"
    return ToolOutput(f"Replied on {where} of pull request {pull_request_id} as {who}.",
                      {k: v for k, v in data.items() if v is not None})


def _plan_reply(azure: AzureSession, project: str, repo: str, pull_request_id: int, content: str,
                thread_id: int | None = None) -> list[PlannedRequest]:
    _text(content, "reply")
    return [PlannedRequest("POST", _reply_url(azure, project, repo, pull_request_id, thread_id))]


TOOLS = (
    AzureTool(
        name="devops_pr_create",
        description="Open a pull request into the default branch unless target_branch; reviewers by email.",
        run=devops_pr_create,
        plan=_plan_pr_create,
        operations=(DeclaredOperation(PRS_WRITE),),  # its reads (repository, identities) are in its plan
        read_only=False,
        idempotent=False,
        output_schema=_PR,
    ),
    AzureTool(
        name="devops_pr_get",
        description="A pull request: status, branches, reviewers' votes, linked work items.",
        run=devops_pr_get,
        plan=_plan_pr_get,
        operations=(DeclaredOperation(PRS_READ),),
        output_schema=_PR,
    ),
    AzureTool(
        name="devops_pr_threads_list",
        description="A pull request's comment threads.",
        run=devops_pr_threads_list,
        plan=_plan_threads,
        operations=(DeclaredOperation(THREADS_READ),),
        output_schema=LISTING,
    ),
    AzureTool(
        name="devops_pr_thread_reply",
        description="Reply in thread_id, or without it start a new thread.",
        run=devops_pr_thread_reply,
        plan=_plan_reply,
        operations=(DeclaredOperation(THREAD_COMMENTS_WRITE), DeclaredOperation(THREADS_WRITE)),
        read_only=False,
        idempotent=False,
        output_schema=obj(("threadId",), threadId=INTEGER, id=INTEGER),
    ),
)
