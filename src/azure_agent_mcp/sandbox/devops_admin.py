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
