"""Azure DevOps Git: repositories, refs, items, commits and pushes over the in-memory object store.

A push is all or nothing, as in the service: every change of every commit is applied to a
staging overlay, and only when the whole push is valid are its objects merged into the store and
its ref moved. A base that moved (``oldObjectId`` not the ref's tip) is TF401028 (409). Commit
``author`` and ``committer`` are the token's principal, whatever the body says.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import time
from typing import Any
from urllib.parse import quote

from azure_agent_mcp.sandbox.devops_errors import DevOpsFailure, bad_request
from azure_agent_mcp.sandbox.devops_objects import ZERO_ID, Commit, Signature, Staging
from azure_agent_mcp.sandbox.devops_routes import Call, Route, integer, listing, now_iso
from azure_agent_mcp.sandbox.devops_world import STAKEHOLDER, Push, Repository
from azure_agent_mcp.sandbox.protocol import Response, json_response

_SHA = re.compile(r"^[0-9a-fA-F]{40}$")
_BAD_REF = re.compile(r"(\.\.|//|@\{|[\x00-\x20\x7f~^:?*\[\\])")
_CHANGE_TYPES = {"add": "add", "edit": "edit", "delete": "delete", "1": "add", "2": "edit", "16": "delete"}
_CONTENT_TYPES = {"rawtext": "rawtext", "base64encoded": "base64encoded", "0": "rawtext", "1": "base64encoded"}
MAX_PATH = 400


def _git_date(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def repo_url(call: Call, repo: Repository) -> str:
    return f"{call.project_url}/_apis/git/repositories/{repo.repo_id}"


def repo_json(call: Call, repo: Repository) -> dict[str, Any]:
    project = call.org.project_by_id(repo.project_id)
    size = sum(len(b) for b in repo.objects.blobs.values())
    web = f"{call.org_url}/{quote(project.name)}/_git/{quote(repo.name)}"
    return {"id": repo.repo_id, "name": repo.name, "url": repo_url(call, repo), "project": call.project_ref(project),
            "defaultBranch": repo.default_branch, "size": size, "remoteUrl": web,
            "sshUrl": f"git@ssh.dev.azure.com:v3/{call.org.name}/{quote(project.name)}/{quote(repo.name)}",
            "webUrl": web, "isDisabled": False, "isInMaintenance": False}


def _signature(sig: Signature) -> dict[str, Any]:
    return {"name": sig.name, "email": sig.email, "date": _git_date(sig.epoch)}


def commit_json(call: Call, repo: Repository, commit: Commit) -> dict[str, Any]:
    return {"commitId": commit.sha, "treeId": commit.tree, "parents": list(commit.parents),
            "author": _signature(commit.author), "committer": _signature(commit.committer),
            "comment": commit.comment, "url": f"{repo_url(call, repo)}/commits/{commit.sha}",
            "remoteUrl": f"{repo_json(call, repo)['remoteUrl']}/commit/{commit.sha}"}


def normalize_path(raw: Any, what: str = "path") -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise bad_request(f"The {what} is missing: give a repository path such as /src/app.py.")
    if len(raw) > MAX_PATH or any(ord(c) < 32 for c in raw):
        raise bad_request(f"The {what} '{raw[:60]}' is not a valid repository path.")
    parts = [p for p in raw.replace("\\", "/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise bad_request(f"The {what} '{raw[:60]}' may not contain '.' or '..' segments.")
    return "/" + "/".join(parts)


def branch_name(raw: str) -> str:
    return raw if raw.startswith("refs/") else f"refs/heads/{raw}"


def valid_ref_name(name: str) -> bool:
    return (name.startswith("refs/heads/") and len(name) > len("refs/heads/") and len(name) <= 250
            and not _BAD_REF.search(name) and not name.endswith(("/", ".lock", ".")))


def resolve_version(call: Call, repo: Repository) -> tuple[Commit, str]:
    """The commit ``versionDescriptor.*`` names (default: the default branch), and how the service shows it."""
    version = call.query("versionDescriptor.version") or call.query("version")
    kind = (call.query("versionDescriptor.versionType") or call.query("versionType") or "branch").lower()
    if not version:
        version, kind = repo.default_branch.removeprefix("refs/heads/"), "branch"
    shown = f"<{kind.capitalize()}: {version[:100]}>"
    sha = None
    if kind == "branch":
        sha = repo.refs.get(branch_name(version))
    elif kind == "commit" and _SHA.match(version):
        sha = version.lower()
    elif kind == "tag":
        sha = repo.refs.get(f"refs/tags/{version}")
    commit = repo.objects.commits.get(sha) if sha else None
    if commit is None:
        raise DevOpsFailure(404, "GitUnresolvableToCommitException",
                            f"TF401175: The version descriptor {shown} could not be resolved to a version commit. "
                            "Name an existing branch, tag or commit.")
    return commit, shown


# -- repositories and refs -----------------------------------------------------------------------

def _repositories(call: Call) -> Response:
    assert call.project is not None
    if call.member.access_level == STAKEHOLDER:  # no code access: the service lists nothing
        return listing([])
    return listing([repo_json(call, r) for r in sorted(call.project.repos.values(), key=lambda r: r.name)])


def _repository(call: Call) -> Response:
    return json_response(200, repo_json(call, call.repository(call.args["repo"])))


def _refs(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    prefix = "refs/" + (call.query("filter") or "")
    contains = (call.query("filterContains") or "").lower()
    refs = [{"name": name, "objectId": sha, "creator": call.ref(repo.ref_creators.get(name, "")),
             "url": f"{repo_url(call, repo)}/refs?filter={quote(name.removeprefix('refs/'))}"}
            for name, sha in sorted(repo.refs.items()) if name.startswith(prefix) and contains in name.lower()]
    return listing(refs)


# -- items and commits ---------------------------------------------------------------------------

def _tree_sha(repo: Repository, commit: Commit, path: str) -> str | None:
    sha = commit.tree
    for part in [p for p in path.split("/") if p]:
        entries = repo.objects.trees.get(sha, ())
        entry = next((e for e in entries if e.name == part and e.is_tree), None)
        if entry is None:
            return None
        sha = entry.sha
    return sha


def _item(call: Call, repo: Repository, commit: Commit, path: str, folder: bool, sha: str,
          content: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"objectId": sha, "gitObjectType": "tree" if folder else "blob", "commitId": commit.sha,
                            "path": path}
    if folder:
        body["isFolder"] = True
    elif content:
        data = repo.objects.blobs[sha]
        try:
            body["content"] = data.decode("utf-8")
            body["contentMetadata"] = {"encoding": 65001, "fileName": path.rsplit("/", 1)[-1]}
        except UnicodeDecodeError:
            body["content"] = base64.b64encode(data).decode()
            body["contentMetadata"] = {"isBinary": True, "fileName": path.rsplit("/", 1)[-1]}
    body["url"] = f"{repo_url(call, repo)}/items?path={quote(path)}&versionType=Commit&version={commit.sha}"
    return body


def _items(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    commit, shown = resolve_version(call, repo)
    path = normalize_path(call.query("path") or call.query("scopePath") or "/")
    recursion = (call.query("recursionLevel") or "none").lower()
    include = (call.query("includeContent") or "").lower() == "true"
    blob = commit.files.get(path)
    folder_sha = None if blob is not None else _tree_sha(repo, commit, path)
    if blob is None and folder_sha is None:
        raise DevOpsFailure(404, "GitItemNotFoundException",
                            f"TF401174: The item '{path}' could not be found in the repository '{repo.name}' at the "
                            f"version specified by '{shown}' (resolved to commit {commit.sha}).")
    if blob is not None and recursion == "none":
        wants_raw = ((call.query("$format") or "").lower() in ("octetstream", "text")
                     or (call.query("download") or "").lower() == "true"
                     or call.request.headers.get("accept", "").split(";")[0].strip() in (
                         "application/octet-stream", "text/plain"))
        if wants_raw:
            return Response(200, repo.objects.blobs[blob], [("content-type", "application/octet-stream")])
        return json_response(200, _item(call, repo, commit, path, False, blob, include))
    if folder_sha is None:
        assert blob is not None
        return listing([_item(call, repo, commit, path, False, blob, include)])
    if recursion not in ("onelevel", "full", "onelevelplusnestedemptyfolders"):
        return json_response(200, _item(call, repo, commit, path, True, folder_sha, False))
    prefix = "" if path == "/" else path
    items = [_item(call, repo, commit, path, True, folder_sha, False)]
    folders: set[str] = set()
    for file_path, sha in sorted(commit.files.items()):
        if not file_path.startswith(prefix + "/"):
            continue
        relative = file_path[len(prefix) + 1:].split("/")
        for depth in range(1, len(relative)):
            sub = prefix + "/" + "/".join(relative[:depth])
            if sub not in folders and (recursion == "full" or depth == 1):
                folders.add(sub)
                items.append(_item(call, repo, commit, sub, True, _tree_sha(repo, commit, sub) or "", False))
        if recursion == "full" or len(relative) == 1:
            items.append(_item(call, repo, commit, file_path, False, sha, include))
    return listing(items)


def _commit(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    sha = call.args["commit"].lower()
    commit = repo.objects.commits.get(sha) if _SHA.match(sha) else None
    if commit is None:
        raise DevOpsFailure(404, "GitUnresolvableToCommitException",
                            f"TF401175: The version descriptor <Commit: {call.args['commit'][:60]}> could not be "
                            "resolved to a version commit.")
    return json_response(200, commit_json(call, repo, commit))


def _commits(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    version = call.query("searchCriteria.itemVersion.version")
    if version:
        sha = repo.refs.get(branch_name(version))
        if sha is None:
            raise DevOpsFailure(404, "GitUnresolvableToCommitException",
                                f"TF401175: The version descriptor <Branch: {version[:100]}> could not be resolved "
                                "to a version commit.")
    else:
        sha = repo.refs[repo.default_branch]
    top = call.query("searchCriteria.$top") or call.query("$top") or "100"
    limit = integer(top, "$top")
    out = []
    while sha and len(out) < limit:
        commit = repo.objects.commits[sha]
        out.append(commit_json(call, repo, commit))
        sha = commit.parents[0] if commit.parents else None
    return listing(out)


# -- pushes ----------------------------------------------------------------------------------------

def _content(change: dict[str, Any], path: str) -> bytes:
    new = change.get("newContent")
    if not isinstance(new, dict) or not isinstance(new.get("content"), str):
        raise bad_request(f"The change to '{path}' has no newContent: give {{\"content\": \"...\", \"contentType\": "
                          "\"rawtext\"}.")
    kind = _CONTENT_TYPES.get(str(new.get("contentType", "rawtext")).lower())
    if kind is None:
        raise bad_request(f"The contentType '{str(new.get('contentType'))[:40]}' of the change to '{path}' is not "
                          "valid: use rawtext or base64encoded.")
    if kind == "rawtext":
        return new["content"].encode("utf-8", "surrogatepass")
    try:
        return base64.b64decode(new["content"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request(f"The content of the change to '{path}' is not valid base64 (contentType "
                          "base64encoded).") from exc


def _apply(files: dict[str, str], change: Any, staging: Staging, repo: Repository) -> None:
    if not isinstance(change, dict):
        raise bad_request("Each change must be an object: {\"changeType\": \"add\", \"item\": {\"path\": \"/x\"}, "
                          "\"newContent\": {...}}.")
    kind = _CHANGE_TYPES.get(str(change.get("changeType", "")).lower())
    item = change.get("item")
    path = normalize_path(item.get("path") if isinstance(item, dict) else None, "item path")
    if path == "/":
        raise bad_request("A change must name a file, not the repository root.")
    if kind is None:
        raise bad_request(f"The changeType '{str(change.get('changeType'))[:40]}' of the change to '{path}' is not "
                          "supported: use add, edit or delete.")
    folder = any(p.startswith(path + "/") for p in files)
    if kind == "add":
        if path in files or folder:
            raise bad_request(f"TF401186: The path '{path}' specified in the add operation already exists in "
                              f"'{repo.name}'. Please specify a new path, or use edit.")
        parents = path.split("/")
        for depth in range(2, len(parents)):
            if "/".join(parents[:depth]) in files:
                raise bad_request(f"The path '{path}' cannot be added: '{'/'.join(parents[:depth])}' is a file.")
        files[path] = staging.blob(_content(change, path))
    elif kind == "edit":
        if path not in files:
            raise DevOpsFailure(404, "GitItemNotFoundException",
                                f"TF401174: The item '{path}' could not be found in the repository '{repo.name}': it "
                                "cannot be edited. Use add for a new file.")
        files[path] = staging.blob(_content(change, path))
    else:
        if path not in files:
            raise DevOpsFailure(404, "GitItemNotFoundException",
                                f"TF401174: The item '{path}' could not be found in the repository '{repo.name}': it "
                                "cannot be deleted.")
        del files[path]


def _push(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    body = call.json_object("push")
    updates = body.get("refUpdates")
    commits = body.get("commits")
    if not isinstance(updates, list) or len(updates) != 1 or not isinstance(updates[0], dict):
        raise bad_request("A push needs exactly one refUpdates entry: [{\"name\": \"refs/heads/<branch>\", "
                          "\"oldObjectId\": \"<the branch's tip, or the base commit for a new branch>\"}].")
    if not isinstance(commits, list) or not commits:
        raise bad_request("A push needs at least one commit: \"commits\": [{\"comment\": \"...\", \"changes\": "
                          "[...]}].")
    name, old = updates[0].get("name"), updates[0].get("oldObjectId")
    if not isinstance(name, str) or not valid_ref_name(name):
        raise bad_request(f"TF401025: '{str(name)[:100]}' is not a valid name for a Git branch: use "
                          "refs/heads/<name> without spaces, '..', '~', '^', ':', '?', '*', '[' or '\\'.")
    if not isinstance(old, str) or not _SHA.match(old):
        raise bad_request("oldObjectId must be a 40-character commit id: the branch's current tip, the base "
                          "commit of a new branch, or forty zeros.")
    old = old.lower()
    tip = repo.refs.get(name)
    if (tip is not None and old != tip) or (tip is None and old != ZERO_ID and old not in repo.objects.commits):
        if tip is None:
            raise bad_request(f"TF401035: The object '{old}' does not exist in the repository '{repo.name}': a new "
                              "branch's oldObjectId must be an existing commit (or forty zeros).")
        raise DevOpsFailure(409, "GitReferenceStaleException",
                            f"TF401028: The reference '{name}' has already been updated by another client, so you "
                            "cannot update it. Please try again.")
    staging = Staging(repo.objects)
    parent = old if old != ZERO_ID else None
    now = int(time.time())
    who = Signature(call.member.display_name, call.member.upn, now)
    made: list[Commit] = []
    for entry in commits:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list) or not entry["changes"]:
            raise bad_request("Each commit needs a non-empty \"changes\" list.")
        comment = entry.get("comment")
        if not isinstance(comment, str) or not comment.strip():
            raise bad_request("Each commit needs a comment (its message).")
        parents = entry.get("parents")
        if isinstance(parents, list) and parents and not made:
            first = str(parents[0]).lower()
            if staging.commit_by_id(first) is None:
                raise bad_request(f"TF401035: The object '{first[:40]}' does not exist in the repository "
                                  f"'{repo.name}'.")
            if tip is not None and first != tip:
                raise DevOpsFailure(409, "GitReferenceStaleException",
                                    f"TF401028: The reference '{name}' has already been updated by another client, "
                                    "so you cannot update it. Please try again.")
            parent = first
        base = staging.commit_by_id(parent) if parent else None
        files = dict(base.files) if base is not None else {}
        for change in entry["changes"]:
            _apply(files, change, staging, repo)
        commit = staging.commit(files, (parent,) if parent else (), who, who, comment)
        made.append(commit)
        parent = commit.sha
    # the whole push is valid: only now do objects become reachable and the ref move
    repo.objects.merge(staging.new)
    repo.refs[name] = made[-1].sha
    repo.ref_creators.setdefault(name, call.member.object_id)
    push = Push(call.org.next_push, now_iso(), call.member.object_id,
                [{"repositoryId": repo.repo_id, "name": name, "oldObjectId": old, "newObjectId": made[-1].sha}],
                [c.sha for c in made])
    call.org.next_push += 1
    repo.pushes.append(push)
    return json_response(201, push_json(call, repo, push))


def push_json(call: Call, repo: Repository, push: Push) -> dict[str, Any]:
    commits = [repo.objects.commits[sha] for sha in push.commits]
    url = f"{repo_url(call, repo)}/pushes/{push.push_id}"
    pusher = call.ref(push.pushed_by)
    return {"commits": [{"treeId": c.tree, "commitId": c.sha, "author": _signature(c.author),
                         "committer": _signature(c.committer), "comment": c.comment, "parents": list(c.parents),
                         "url": f"{repo_url(call, repo)}/commits/{c.sha}"} for c in commits],
            "refUpdates": push.ref_updates, "repository": repo_json(call, repo), "pushedBy": pusher,
            "pushId": push.push_id, "date": push.date, "url": url,
            "_links": {"self": {"href": url}, "repository": {"href": repo_url(call, repo)},
                       "commits": {"href": f"{url}/commits"}, "pusher": {"href": pusher.get("url", "")},
                       "refs": {"href": f"{repo_url(call, repo)}/refs/{push.ref_updates[0]['name']}"}}}


def _pushes(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    return listing([push_json(call, repo, p) for p in reversed(repo.pushes)])


def _push_get(call: Call) -> Response:
    repo = call.repository(call.args["repo"])
    wanted = integer(call.args["push"], "pushId")
    push = next((p for p in repo.pushes if p.push_id == wanted), None)
    if push is None:
        raise DevOpsFailure(404, "GitPushNotFoundException", f"TF401180: The push {wanted} does not exist in the "
                                                             f"repository '{repo.name}'.")
    return json_response(200, push_json(call, repo, push))


_R = "AzureDevOps/git/repositories"
ROUTES = (
    Route("GET", ("git", "repositories"), f"{_R}/read", _repositories),
    Route("GET", ("git", "repositories", "{repo}"), f"{_R}/read", _repository),
    Route("GET", ("git", "repositories", "{repo}", "refs"), f"{_R}/refs/read", _refs),
    Route("GET", ("git", "repositories", "{repo}", "items"), f"{_R}/items/read", _items),
    Route("GET", ("git", "repositories", "{repo}", "commits"), f"{_R}/commits/read", _commits),
    Route("GET", ("git", "repositories", "{repo}", "commits", "{commit}"), f"{_R}/commits/read", _commit),
    Route("POST", ("git", "repositories", "{repo}", "pushes"), f"{_R}/pushes/write", _push),
    Route("GET", ("git", "repositories", "{repo}", "pushes"), f"{_R}/pushes/read", _pushes),
    Route("GET", ("git", "repositories", "{repo}", "pushes", "{push}"), f"{_R}/pushes/read", _push_get),
)
