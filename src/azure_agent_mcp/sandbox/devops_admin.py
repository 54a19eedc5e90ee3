"""The admin API's view of the Azure DevOps organization: plain data for tests and the demo to assert on.

People are named by UPN; no secret is included (service connection keys, secret variables and
PAT tokens are omitted, PATs are listed by name and owner only).
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.sandbox.devops_world import Organization, Repository


def _who(org: Organization, object_id: Any) -> Any:
    member = org.member(str(object_id)) if object_id else None
    return member.upn if member is not None else object_id


def _repo(org: Organization, repo: Repository) -> dict[str, Any]:
    store = repo.objects
    return {
        "id": repo.repo_id, "name": repo.name, "default_branch": repo.default_branch, "refs": dict(repo.refs),
        "files": {name: dict(store.commits[sha].files) for name, sha in repo.refs.items()},
        "objects": {"blobs": len(store.blobs), "trees": len(store.trees), "commits": len(store.commits)},
        "commits": {sha: {"parents": list(c.parents), "author": c.author.email, "committer": c.committer.email,
                          "comment": c.comment} for sha, c in store.commits.items()},
        "pushes": [{"push_id": p.push_id, "pushed_by": _who(org, p.pushed_by), "date": p.date,
                    "ref_updates": p.ref_updates, "commits": p.commits} for p in repo.pushes],
        "pull_requests": [{
            "id": pr.pull_request_id, "title": pr.title, "description": pr.description, "source": pr.source,
            "target": pr.target, "status": pr.status, "created_by": _who(org, pr.created_by),
            "reviewers": [{"upn": _who(org, r.object_id), "vote": r.vote, "is_required": r.is_required}
                          for r in pr.reviewers],
            "work_items": list(pr.work_items),
            "threads": [{"id": t.thread_id, "status": t.status, "context": t.context,
                         "comments": [{"id": c.comment_id, "parent": c.parent_id, "author": _who(org, c.author),
                                       "content": c.content, "type": c.comment_type} for c in t.comments]}
                        for t in pr.threads],
        } for pr in repo.pulls.values()],
    }


def devops_state(state: Any) -> dict[str, Any]:
    org: Organization = state.devops
    identity_fields = ("System.CreatedBy", "System.ChangedBy", "System.AssignedTo")
    return {
        "organization": org.name,
        "members": [{"upn": m.upn, "object_id": m.object_id, "id": m.vsid, "display_name": m.display_name,
                     "access_level": m.access_level, "projects": dict(m.roles)} for m in org.members.values()],
        "projects": [{"id": p.project_id, "name": p.name, "repositories": [_repo(org, r) for r in p.repos.values()]}
                     for p in org.projects.values()],
        "work_items": [{
            "id": w.work_item_id, "project": org.project_by_id(w.project_id).name, "rev": w.rev,
            "fields": {k: (_who(org, v) if k in identity_fields else v) for k, v in w.fields.items()},
            "relations": list(w.relations),
            "comments": [{"id": c.comment_id, "text": c.text, "created_by": _who(org, c.created_by)}
                         for c in w.comments],
        } for w in org.work_items.values()],
        "pats": [{"display_name": p.display_name, "owner": _who(org, p.owner), "scope": p.scope,
                  "valid_to": p.valid_to} for p in org.pats],
    }


class DevOpsAdminError(ValueError):
    """A devops admin request that cannot be carried out; the message says what to send instead."""


def add_pull_request_comment(state: Any, body: Any) -> dict[str, Any]:
    """A member comments on a pull request without a token of their own (the demo's reviewer).

    Starts a new thread, or replies in ``thread_id``; the comment is authored by ``author`` (a
    member's UPN) exactly as if that member had posted it through the REST API.
    """
    from azure_agent_mcp.sandbox.devops_routes import now_iso
    from azure_agent_mcp.sandbox.devops_world import STAKEHOLDER, Comment, Thread

    org: Organization = state.devops
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("repository", "author",
                                                                                      "content")):
        raise DevOpsAdminError('The body must be {"repository": "storefront-web", "pull_request_id": 1, "author": '
                               '"<member upn>", "content": "...", "thread_id": <optional>}.')
    repo = next((r for p in org.projects.values() for r in p.repos.values()
                 if r.name.lower() == body["repository"].lower()), None)
    if repo is None:
        raise DevOpsAdminError(f"No repository {body['repository']!r} in {org.name}.")
    pr = repo.pulls.get(body.get("pull_request_id")) if isinstance(body.get("pull_request_id"), int) else None
    if pr is None:
        raise DevOpsAdminError(f"No pull request {body.get('pull_request_id')!r} in {repo.name}.")
    author = next((m for m in org.members.values() if m.upn.lower() == body["author"].lower()), None)
    project = org.project_by_id(repo.project_id)
    if author is None or author.access_level == STAKEHOLDER or project.name.lower() not in author.roles:
        raise DevOpsAdminError(f"{body['author']!r} is not a member with code access to {project.name}.")
    now = now_iso()
    thread_id = body.get("thread_id")
    if thread_id is None:
        thread = Thread(max((t.thread_id for t in pr.threads), default=0) + 1, "active", now, now, [])
        pr.threads.append(thread)
        parent = 0
    else:
        found = next((t for t in pr.threads if t.thread_id == thread_id), None)
        if found is None:
            raise DevOpsAdminError(f"No thread {thread_id!r} in pull request {pr.pull_request_id}.")
        thread = found
        parent = thread.comments[-1].comment_id if thread.comments else 0
    comment = Comment(len(thread.comments) + 1, parent, author.object_id, body["content"], now, now)
    thread.comments.append(comment)
    thread.updated = now
    return {"pull_request_id": pr.pull_request_id, "thread_id": thread.thread_id, "comment_id": comment.comment_id,
            "author": author.upn}
