"""Azure DevOps pull requests: create, read, list, abandon; reviewers and votes; linked work items; threads.

``createdBy`` and every comment's ``author`` are the token's principal. Reviewers are named by
their Azure DevOps identity id (what the identities API returns); an id nobody has is the
service's InvalidArgumentValueException. Linking a work item also records the pull request as
an ``ArtifactLink`` relation on the work item, as the service does.
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.sandbox.devops_errors import DevOpsFailure, bad_request
from azure_agent_mcp.sandbox.devops_git import branch_name, repo_json, repo_url
from azure_agent_mcp.sandbox.devops_routes import Call, Route, integer, is_digits, listing, now_iso
from azure_agent_mcp.sandbox.devops_world import Comment, PullRequest, Repository, Reviewer, Thread
from azure_agent_mcp.sandbox.principals import stable_guid
from azure_agent_mcp.sandbox.protocol import Response, json_response

THREAD_STATUS = ("unknown", "active", "fixed", "wontFix", "closed", "byDesign", "pending")
COMMENT_TYPES = ("unknown", "text", "codeChange", "system")
MAX_TEXT = 150_000


def _enum(value: Any, names: tuple[str, ...], what: str, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    if isinstance(value, str):
        found = next((n for n in names if n.lower() == value.lower()), None)
        if found is not None:
            return found
    raise bad_request(f"The {what} '{str(value)[:40]}' is not valid: use one of {', '.join(names)}.")


def _text(value: Any, what: str, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise bad_request(f"The {what} is missing or not a string.")
    if len(value) > MAX_TEXT:
        raise bad_request(f"The {what} is longer than {MAX_TEXT} characters.")
    return value


def _pull(call: Call, repo: Repository) -> PullRequest:
    wanted = integer(call.args["pr"], "pullRequestId")
    pr = repo.pulls.get(wanted)
    if pr is None:
        raise DevOpsFailure(404, "GitPullRequestNotFoundException",
                            f"TF401180: The requested pull request was not found. Pull request {wanted} does not "
                            f"exist in the repository '{repo.name}'.")
    call.log["pull_request"] = pr.pull_request_id
    return pr


def _pr_url(call: Call, repo: Repository, pr: PullRequest) -> str:
    return f"{repo_url(call, repo)}/pullRequests/{pr.pull_request_id}"


def _reviewer_json(call: Call, repo: Repository, pr: PullRequest, reviewer: Reviewer) -> dict[str, Any]:
    ref = call.ref(reviewer.object_id)
    return {**ref, "reviewerUrl": f"{_pr_url(call, repo, pr)}/reviewers/{ref['id']}", "vote": reviewer.vote,
            "hasDeclined": False, "isRequired": reviewer.is_required, "isFlagged": False}


def pr_json(call: Call, repo: Repository, pr: PullRequest) -> dict[str, Any]:
    url = _pr_url(call, repo, pr)
    commits = f"{repo_url(call, repo)}/commits"
    body: dict[str, Any] = {
        "repository": repo_json(call, repo), "pullRequestId": pr.pull_request_id, "codeReviewId": pr.pull_request_id,
        "status": pr.status, "createdBy": call.ref(pr.created_by), "creationDate": pr.creation_date,
        "title": pr.title, "description": pr.description, "sourceRefName": pr.source, "targetRefName": pr.target,
        "mergeStatus": "succeeded", "isDraft": pr.is_draft,
        "mergeId": stable_guid("devops-merge", repo.repo_id, str(pr.pull_request_id)),
        "lastMergeSourceCommit": {"commitId": pr.source_commit, "url": f"{commits}/{pr.source_commit}"},
        "lastMergeTargetCommit": {"commitId": pr.target_commit, "url": f"{commits}/{pr.target_commit}"},
        "reviewers": [_reviewer_json(call, repo, pr, r) for r in pr.reviewers],
        "url": url, "supportsIterations": True,
        "artifactId": f"vstfs:///Git/PullRequestId/{repo.project_id}%2f{repo.repo_id}%2f{pr.pull_request_id}",
        "_links": {"self": {"href": url}, "repository": {"href": repo_url(call, repo)},
                   "workItems": {"href": f"{url}/workitems"},
                   "createdBy": {"href": call.ref(pr.created_by).get("url", "")}},
    }
    if pr.work_items:
        body["workItemRefs"] = [{"id": str(w), "url": f"{call.org_url}/_apis/wit/workItems/{w}"}
                                for w in pr.work_items]
    if pr.closed_date:
        body["closedDate"] = pr.closed_date
    return body


def _reviewers_of(call: Call, raw: Any) -> list[Reviewer]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request("reviewers must be a list of {\"id\": \"<identity id>\"}.")
    out: list[Reviewer] = []
    for entry in raw:
        rid = entry.get("id") if isinstance(entry, dict) else None
        member = call.org.member_by_vsid(rid) if isinstance(rid, str) else None
        if member is None:
            shown = rid if isinstance(rid, str) else ""
            raise bad_request(f"Invalid argument value.\r\nParameter name: The identity {shown[:60]} is not "
                              "recognized. Look the reviewer up with the identities API (searchFilter=General, "
                              "filterValue=<their sign-in name>) and pass its id.")
        if all(r.object_id != member.object_id for r in out):
            out.append(Reviewer(member.object_id, 0, bool(entry.get("isRequired", False))))
    return out


def _work_item_ids(call: Call, raw: Any) -> list[int]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request("workItemRefs must be a list of {\"id\": \"<work item id>\"}.")
    ids: list[int] = []
    for entry in raw:
        value = entry.get("id") if isinstance(entry, dict) else None
        wid = int(value) if isinstance(value, (int, str)) and is_digits(str(value)) else None
        item = call.org.work_items.get(wid) if wid is not None else None
        if item is None or call.org.project_by_id(item.project_id).name.lower() not in call.member.roles:
            raise bad_request(f"TF401232: Work item {str(value)[:20]} does not exist, or you do not have permissions "
                              "to read it. It cannot be linked to the pull request.")
        if item.work_item_id not in ids:
            ids.append(item.work_item_id)
    return ids


def _create(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    body = call.json_object("pullRequest")
    source, target = body.get("sourceRefName"), body.get("targetRefName")
    if not isinstance(source, str) or not isinstance(target, str) or not source or not target:
        raise bad_request("sourceRefName and targetRefName are required: e.g. refs/heads/fix-x and refs/heads/main.")
    source, target = branch_name(source), branch_name(target)
    if source not in repo.refs or target not in repo.refs:
        raise bad_request("TF401398: The pull request cannot be activated because the source and/or the target "
                          "branch no longer exists, or the requested refs are not branches.")
    if source == target:
        raise bad_request("The source and target branch of a pull request must be different branches.")
    title = _text(body.get("title"), "title")
    description = _text(body.get("description"), "description", required=False)
    reviewers = _reviewers_of(call, body.get("reviewers"))
    work_items = _work_item_ids(call, body.get("workItemRefs"))
    if any(p.status == "active" and p.source == source and p.target == target for p in repo.pulls.values()):
        raise DevOpsFailure(409, "GitPullRequestExistsException",
                            "TF401179: An active pull request for the source and target branch already exists.")
    pr = PullRequest(call.org.next_pull_request, title, description, source, target, call.member.object_id,
                     now_iso(), repo.refs[source], repo.refs[target], is_draft=bool(body.get("isDraft", False)),
                     reviewers=reviewers, work_items=work_items)
    call.org.next_pull_request += 1
    repo.pulls[pr.pull_request_id] = pr
    for wid in work_items:
        item = call.org.work_items[wid]
        item.relations.append({"rel": "ArtifactLink", "url": pr_json(call, repo, pr)["artifactId"],
                               "attributes": {"authorizedDate": pr.creation_date, "id": len(item.relations) + 1,
                                              "resourceCreatedDate": pr.creation_date, "resourceModifiedDate":
                                              pr.creation_date, "revisedDate": "9999-01-01T00:00:00Z",
                                              "name": "Pull Request"}})
        item.rev += 1
        item.fields["System.ChangedDate"] = pr.creation_date
        item.fields["System.ChangedBy"] = call.member.object_id
    call.log["pull_request"] = pr.pull_request_id
    return json_response(201, pr_json(call, repo, pr))


def _list(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    status = (call.query("searchCriteria.status") or "active").lower()
    source = call.query("searchCriteria.sourceRefName")
    target = call.query("searchCriteria.targetRefName")
    pulls = [p for p in sorted(repo.pulls.values(), key=lambda p: -p.pull_request_id)
             if (status == "all" or p.status == status) and (not source or p.source == branch_name(source))
             and (not target or p.target == branch_name(target))]
    skip = integer(call.query("$skip") or "0", "$skip")
    top = integer(call.query("$top") or "101", "$top")
    return listing([pr_json(call, repo, p) for p in pulls[skip:skip + top]])


def _get(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    return json_response(200, pr_json(call, repo, _pull(call, repo)))


def _update(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    pr = _pull(call, repo)
    body = call.json_object("pullRequest")
    if "title" in body:
        pr.title = _text(body["title"], "title")
    if "description" in body:
        pr.description = _text(body["description"], "description", required=False)
    if "status" in body:
        status = _enum(body["status"], ("notSet", "active", "abandoned", "completed"), "status", pr.status)
        if status == "completed":
            raise bad_request("Completing (merging) a pull request is not supported by the sandbox's Azure DevOps.")
        if status == "abandoned" and pr.status == "active":
            pr.status, pr.closed_date = "abandoned", now_iso()
        elif status == "active" and pr.status == "abandoned":
            pr.status, pr.closed_date = "active", None
    return json_response(200, pr_json(call, repo, pr))


def _reviewers(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    pr = _pull(call, repo)
    return listing([_reviewer_json(call, repo, pr, r) for r in pr.reviewers])


def _vote(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    pr = _pull(call, repo)
    member = call.org.member_by_vsid(call.args["reviewer"])
    if member is None:
        raise bad_request(f"Invalid argument value.\r\nParameter name: The identity {call.args['reviewer'][:60]} is "
                          "not recognized.")
    body = call.json_object("reviewer")
    vote = body.get("vote", 0)
    if vote not in (-10, -5, 0, 5, 10) or isinstance(vote, bool):
        raise bad_request("vote must be one of 10 (approved), 5 (approved with suggestions), 0 (no vote), "
                          "-5 (waiting for author), -10 (rejected).")
    if vote != 0 and member.object_id != call.member.object_id:
        raise bad_request("Invalid argument value.\r\nParameter name: A reviewer can only cast their own vote.")
    reviewer = next((r for r in pr.reviewers if r.object_id == member.object_id), None)
    if reviewer is None:
        reviewer = Reviewer(member.object_id)
        pr.reviewers.append(reviewer)
    reviewer.vote = vote
    reviewer.is_required = bool(body.get("isRequired", reviewer.is_required))
    return json_response(200, _reviewer_json(call, repo, pr, reviewer))


def _work_items(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    pr = _pull(call, repo)
    return listing([{"id": str(w), "url": f"{call.org_url}/_apis/wit/workItems/{w}"} for w in pr.work_items])


# -- threads and comments ------------------------------------------------------------------------

def _comment_json(call: Call, repo: Repository, pr: PullRequest, thread: Thread, c: Comment) -> dict[str, Any]:
    url = f"{_pr_url(call, repo, pr)}/threads/{thread.thread_id}/comments/{c.comment_id}"
    return {"id": c.comment_id, "parentCommentId": c.parent_id, "author": call.ref(c.author), "content": c.content,
            "publishedDate": c.published, "lastUpdatedDate": c.updated, "lastContentUpdatedDate": c.updated,
            "commentType": c.comment_type, "usersLiked": [],
            "_links": {"self": {"href": url}, "repository": {"href": repo_url(call, repo)},
                       "threads": {"href": f"{_pr_url(call, repo, pr)}/threads/{thread.thread_id}"}}}


def thread_json(call: Call, repo: Repository, pr: PullRequest, thread: Thread) -> dict[str, Any]:
    url = f"{_pr_url(call, repo, pr)}/threads/{thread.thread_id}"
    return {"pullRequestThreadContext": None, "id": thread.thread_id, "publishedDate": thread.published,
            "lastUpdatedDate": thread.updated,
            "comments": [_comment_json(call, repo, pr, thread, c) for c in thread.comments],
            "status": thread.status, "threadContext": thread.context, "properties": thread.properties,
            "identities": None, "isDeleted": False,
            "_links": {"self": {"href": url}, "repository": {"href": repo_url(call, repo)}}}


def _thread(call: Call, pr: PullRequest) -> Thread:
    wanted = integer(call.args["thread"], "threadId")
    thread = next((t for t in pr.threads if t.thread_id == wanted), None)
    if thread is None:
        raise DevOpsFailure(404, "GitPullRequestCommentThreadNotFoundException",
                            f"TF401181: The pull request thread {wanted} does not exist in pull request "
                            f"{pr.pull_request_id}.")
    return thread


def _new_comment(call: Call, thread: Thread, raw: Any) -> Comment:
    if not isinstance(raw, dict):
        raise bad_request("A comment must be an object: {\"content\": \"...\", \"parentCommentId\": 0, "
                          "\"commentType\": 1}.")
    content = _text(raw.get("content"), "comment content")
    parent = raw.get("parentCommentId", 0)
    if not isinstance(parent, int) or isinstance(parent, bool) or (
            parent and all(c.comment_id != parent for c in thread.comments)):
        raise bad_request(f"The parentCommentId {str(parent)[:20]} does not name a comment of thread "
                          f"{thread.thread_id}: use 0 or an existing comment's id.")
    now = now_iso()
    comment = Comment(len(thread.comments) + 1, parent, call.member.object_id, content, now, now,
                      _enum(raw.get("commentType"), COMMENT_TYPES, "commentType", "text"))
    thread.comments.append(comment)
    thread.updated = now
    return comment


def _threads(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    pr = _pull(call, repo)
    return listing([thread_json(call, repo, pr, t) for t in pr.threads])


def _thread_get(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    pr = _pull(call, repo)
    return json_response(200, thread_json(call, repo, pr, _thread(call, pr)))


def _thread_create(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    pr = _pull(call, repo)
    body = call.json_object("commentThread")
    comments = body.get("comments")
    if not isinstance(comments, list) or not comments:
        raise bad_request("A thread needs at least one comment: \"comments\": [{\"content\": \"...\"}].")
    context = body.get("threadContext")
    if context is not None and not isinstance(context, dict):
        raise bad_request("threadContext must be an object such as {\"filePath\": \"/src/x.py\", "
                          "\"rightFileStart\": {\"line\": 1, \"offset\": 1}, ...}.")
    now = now_iso()
    thread = Thread(max((t.thread_id for t in pr.threads), default=0) + 1,
                    _enum(body.get("status"), THREAD_STATUS, "thread status", "active"), now, now, [], context,
                    body.get("properties") if isinstance(body.get("properties"), dict) else {})
    for raw in comments:
        _new_comment(call, thread, raw)
    pr.threads.append(thread)
    call.log["thread"] = thread.thread_id
    return json_response(200, thread_json(call, repo, pr, thread))


def _thread_update(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    pr = _pull(call, repo)
    thread = _thread(call, pr)
    body = call.json_object("commentThread")
    if "status" in body:
        thread.status = _enum(body["status"], THREAD_STATUS, "thread status", thread.status)
        thread.updated = now_iso()
    return json_response(200, thread_json(call, repo, pr, thread))


def _comments(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    pr = _pull(call, repo)
    thread = _thread(call, pr)
    return listing([_comment_json(call, repo, pr, thread, c) for c in thread.comments])


def _comment_create(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    pr = _pull(call, repo)
    thread = _thread(call, pr)
    comment = _new_comment(call, thread, call.json_object("comment"))
    call.log["thread"] = thread.thread_id
    return json_response(200, _comment_json(call, repo, pr, thread, comment))


_P = "AzureDevOps/git/repositories/pullRequests"
_BASE = ("git", "repositories", "{repo}", "pullrequests")
ROUTES = (
    Route("POST", _BASE, f"{_P}/write", _create),
    Route("GET", _BASE, f"{_P}/read", _list),
    Route("GET", (*_BASE, "{pr}"), f"{_P}/read", _get),
    Route("PATCH", (*_BASE, "{pr}"), f"{_P}/write", _update),
    Route("GET", (*_BASE, "{pr}", "reviewers"), f"{_P}/reviewers/read", _reviewers),
    Route("PUT", (*_BASE, "{pr}", "reviewers", "{reviewer}"), f"{_P}/reviewers/write", _vote),
    Route("GET", (*_BASE, "{pr}", "workitems"), f"{_P}/workItems/read", _work_items),
    Route("GET", (*_BASE, "{pr}", "threads"), f"{_P}/threads/read", _threads),
    Route("POST", (*_BASE, "{pr}", "threads"), f"{_P}/threads/write", _thread_create),
    Route("GET", (*_BASE, "{pr}", "threads", "{thread}"), f"{_P}/threads/read", _thread_get),
    Route("PATCH", (*_BASE, "{pr}", "threads", "{thread}"), f"{_P}/threads/write", _thread_update),
    Route("GET", (*_BASE, "{pr}", "threads", "{thread}", "comments"), f"{_P}/threads/comments/read", _comments),
    Route("POST", (*_BASE, "{pr}", "threads", "{thread}", "comments"), f"{_P}/threads/comments/write",
          _comment_create),
)
