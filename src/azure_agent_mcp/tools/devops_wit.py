"""Azure DevOps work items: get, WIQL query, create, JSON Patch update, comment.

Creates and updates are JSON Patch documents (``application/json-patch+json``) as the service takes
them; the tool checks each operation's shape before anything is sent, and the service's own
refusal (a field that does not exist, a ``test`` that fails, a state the process does not allow)
comes back with its TF code and message, plus what to change.
"""

from __future__ import annotations

import re
from typing import Any

from azure_agent_mcp.tools.base import AzureTool, DeclaredOperation, PlannedRequest, ToolInputError, ToolOutput
from azure_agent_mcp.tools.clients import AzureSession
from azure_agent_mcp.tools.devops import identity, project_hint
from azure_agent_mcp.tools.devops_client import COMMENTS_API_VERSION, DevOpsRequestError
from azure_agent_mcp.tools.schemas import ANY_OBJECT, INTEGER, LISTING, obj

WORK_ITEMS_READ = "AzureDevOps/wit/workItems/read"
WORK_ITEMS_WRITE = "AzureDevOps/wit/workItems/write"
WIQL_READ = "AzureDevOps/wit/wiql/read"
COMMENTS_WRITE = "AzureDevOps/wit/workItems/comments/write"

JSON_PATCH = "application/json-patch+json"
MAX_ID = 2**31 - 1  # Azure DevOps ids are 32-bit
MAX_QUERY_RESULTS = 200  # the work items batch read takes at most 200 ids
MAX_PATCH_OPERATIONS = 100
MAX_TEXT = 32 * 1024
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9 ._-]{0,127}", re.ASCII)
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,127}", re.ASCII)
_PATCH_OPS = ("add", "remove", "replace", "test", "move", "copy")
_QUERY_FIELDS = ("System.Id", "System.WorkItemType", "System.Title", "System.State", "System.AssignedTo")
_WORK_ITEM = obj(("id",), id=INTEGER, rev=INTEGER, fields=ANY_OBJECT)


def _work_item_id(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ToolInputError(f"{value!r} is not a work item id.", hint=f"A work item id is a number from 1 to {MAX_ID}.")
    return value


def _slim(item: dict[str, Any]) -> dict[str, Any]:
    fields = {k: (identity(v) if isinstance(v, dict) and ("uniqueName" in v or "displayName" in v) else v)
              for k, v in (item.get("fields") or {}).items()}
    out: dict[str, Any] = {"id": item.get("id"), "rev": item.get("rev"), "fields": fields, "url": item.get("url")}
    relations = [{k: r.get(k) for k in ("rel", "url") if r.get(k) is not None}
                 | ({"name": r["attributes"]["name"]} if isinstance(r.get("attributes"), dict) and
                    r["attributes"].get("name") else {})
                 for r in item.get("relations") or [] if isinstance(r, dict)]
    if relations:
        out["relations"] = relations
    return {k: v for k, v in out.items() if v is not None}


def _item_url(azure: AzureSession, project: str, work_item: int) -> str:
    return azure.devops().project_url(project, f"wit/workItems/{_work_item_id(work_item)}", {"$expand": "relations"})


def _not_found_hint(project: str, work_item: int) -> dict[int, str]:
    return {404: f"Work item {work_item} does not exist in {project} or this identity cannot read it: "
                 "devops_work_item_query finds work items, devops_project_list shows the projects."}


# -- devops_work_item_get --------------------------------------------------------------------


def devops_work_item_get(azure: AzureSession, project: str, id: int) -> ToolOutput:
    body = azure.devops().send("GET", _item_url(azure, project, id), hint=_not_found_hint(project, id)).body or {}
    item = _slim(body)
    fields = item.get("fields", {})
    return ToolOutput(f"{fields.get('System.WorkItemType', 'Work item')} {item.get('id')}: "
                      f"{fields.get('System.Title', '')} ({fields.get('System.State', '')}).", item)


def _plan_get(azure: AzureSession, project: str, id: int) -> list[PlannedRequest]:
    return [PlannedRequest("GET", _item_url(azure, project, id))]


# -- devops_work_item_query --------------------------------------------------------------------


def _wiql_url(azure: AzureSession, project: str, top: int) -> str:
    return azure.devops().project_url(project, "wit/wiql", {"$top": str(top)})


def _batch_url(azure: AzureSession, project: str, ids: list[int]) -> str:
    query = {"fields": ",".join(_QUERY_FIELDS)}
    if ids:
        query = {"ids": ",".join(str(i) for i in ids), **query}
    return azure.devops().project_url(project, "wit/workItems", query)


def _top(top: int | None) -> int:
    if top is None:
        return 50
    if top < 1 or top > MAX_QUERY_RESULTS:
        raise ToolInputError(f"top must be between 1 and {MAX_QUERY_RESULTS}, got {top}.")
    return top


def _checked_wiql(wiql: str) -> str:
    if not wiql.strip():
        raise ToolInputError("The WIQL query is empty.", hint=WIQL_HINT)
    if len(wiql) > MAX_TEXT:
        raise ToolInputError(f"The WIQL query is {len(wiql)} characters; at most {MAX_TEXT}.")
    return wiql


WIQL_HINT = ("Write WIQL like: SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project AND "
             "[System.State] <> 'Closed' ORDER BY [System.ChangedDate] DESC (field names in brackets, strings in "
             "single quotes).")


def devops_work_item_query(azure: AzureSession, project: str, wiql: str, top: int | None = None) -> ToolOutput:
    client = azure.devops()
    limit = _top(top)
    try:
        answer = client.send("POST", _wiql_url(azure, project, limit), {"query": _checked_wiql(wiql)}).body or {}
    except DevOpsRequestError as exc:
        if exc.status == 400:
            exc.hint = "Azure DevOps could not run the query. " + WIQL_HINT
        elif exc.status == 404:
            exc.hint = project_hint(project)
        raise
    ids = [int(w["id"]) for w in answer.get("workItems") or [] if isinstance(w, dict) and "id" in w][:limit]
    items: list[dict[str, Any]] = []
    if ids:
        batch = client.send("GET", _batch_url(azure, project, ids)).body or {}
        by_id = {w.get("id"): w.get("fields") or {} for w in batch.get("value", [])}
        for work_item in ids:
            fields = by_id.get(work_item, {})
            assigned = fields.get("System.AssignedTo")
            items.append({k: v for k, v in {
                "id": work_item, "type": fields.get("System.WorkItemType"), "title": fields.get("System.Title"),
                "state": fields.get("System.State"),
                "assignedTo": (assigned.get("uniqueName") or assigned.get("displayName"))
                if isinstance(assigned, dict) else assigned,
            }.items() if v is not None})
    return ToolOutput(f"{len(items)} work item(s) match in {project}.", {"project": project, "items": items})


def _plan_query(azure: AzureSession, project: str, wiql: str, top: int | None = None) -> list[PlannedRequest]:
    limit = _top(top)
    body = {"query": _checked_wiql(wiql)}
    import json

    return [PlannedRequest("POST", _wiql_url(azure, project, limit), json.dumps(body, separators=(",", ":")).encode()),
            PlannedRequest("GET", _batch_url(azure, project, []))]


# -- devops_work_item_create -------------------------------------------------------------------


def _type_name(value: str) -> str:
    if not _TYPE.fullmatch(value or "") or value != value.strip():
        raise ToolInputError(f"'{str(value)[:60]}' is not a work item type name.",
                             hint="Use the type's name, e.g. Bug, Task, User Story, Feature or Epic (Agile process).")
    return value


def _field_name(value: str) -> str:
    if not _FIELD.fullmatch(value or ""):
        raise ToolInputError(f"'{str(value)[:60]}' is not a work item field reference name.",
                             hint="Use reference names such as System.Title, System.Description, "
                             "Microsoft.VSTS.Common.Priority.")
    return value


def _create_url(azure: AzureSession, project: str, type: str) -> str:
    from azure_agent_mcp.policy.urlpath import quote_segment

    return azure.devops().project_url(project, "wit/workItems/" + quote_segment("$" + _type_name(type)))


def _create_document(azure: AzureSession, title: str, description: str | None, fields: dict[str, Any] | None,
                     parent: int | None) -> list[dict[str, Any]]:
    if not title.strip():
        raise ToolInputError("A work item needs a title.")
    values: dict[str, Any] = {"System.Title": title}
    if description:
        values["System.Description"] = description
    for name, value in (fields or {}).items():
        values[_field_name(name)] = value
    document = [{"op": "add", "path": f"/fields/{name}", "value": value} for name, value in values.items()]
    if parent is not None:
        url = azure.devops().org_url(f"wit/workItems/{_work_item_id(parent)}").split("?")[0]
        document.append({"op": "add", "path": "/relations/-",
                         "value": {"rel": "System.LinkTypes.Hierarchy-Reverse", "url": url}})
    return document


def _create_hint(project: str, type: str) -> dict[int, str]:
    fix = (f"Check the type '{type}' (the project's process defines them: Agile has Bug, Task, User Story, Feature "
           "and Epic) and the field reference names and values.")
    return {400: fix, 404: fix + " Or: " + project_hint(project)}


def devops_work_item_create(azure: AzureSession, project: str, type: str, title: str, description: str | None = None,
                            fields: dict[str, Any] | None = None, parent: int | None = None) -> ToolOutput:
    document = _create_document(azure, title, description, fields, parent)
    body = azure.devops().send("POST", _create_url(azure, project, type), document, content_type=JSON_PATCH,
                               hint=_create_hint(project, type)).body or {}
    item = _slim(body)
    creator = (item.get("fields", {}).get("System.CreatedBy") or {})
    who = creator.get("uniqueName") or creator.get("displayName") or "this identity"
    return ToolOutput(f"Created {type} {item.get('id')} '{title}' in {project} as {who}.", item)


def _plan_create(azure: AzureSession, project: str, type: str, title: str, description: str | None = None,
                 fields: dict[str, Any] | None = None, parent: int | None = None) -> list[PlannedRequest]:
    _create_document(azure, title, description, fields, parent)
    return [PlannedRequest("POST", _create_url(azure, project, type))]


# -- devops_work_item_update -------------------------------------------------------------------


def _checked_patch(patch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not patch:
        raise ToolInputError("The patch has no operations.", hint=PATCH_HINT)
    if len(patch) > MAX_PATCH_OPERATIONS:
        raise ToolInputError(f"The patch has {len(patch)} operations; at most {MAX_PATCH_OPERATIONS}.")
    checked = []
    for index, op in enumerate(patch):
        if not isinstance(op, dict):
            raise ToolInputError(f"Patch operation {index} is not an object.", hint=PATCH_HINT)
        kind, path = op.get("op"), op.get("path")
        if kind not in _PATCH_OPS:
            raise ToolInputError(f"Patch operation {index} has op {kind!r}; JSON Patch has {', '.join(_PATCH_OPS)}.",
                                 hint=PATCH_HINT)
        if not isinstance(path, str) or not path.startswith("/"):
            raise ToolInputError(f"Patch operation {index} needs a path starting with '/', e.g. /fields/System.State.",
                                 hint=PATCH_HINT)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise ToolInputError(f"Patch operation {index} ({kind}) needs a value.", hint=PATCH_HINT)
        if kind in ("move", "copy") and not isinstance(op.get("from"), str):
            raise ToolInputError(f"Patch operation {index} ({kind}) needs from.", hint=PATCH_HINT)
        checked.append({k: op[k] for k in ("op", "path", "from", "value") if k in op})
    return checked


PATCH_HINT = ('A JSON Patch is a list like [{"op": "add", "path": "/fields/System.State", "value": "Active"}]; '
              'a {"op": "test", "path": "/rev", "value": N} first makes it apply only to revision N.')


def _update_url(azure: AzureSession, project: str, id: int) -> str:
    return azure.devops().project_url(project, f"wit/workItems/{_work_item_id(id)}")


def devops_work_item_update(azure: AzureSession, project: str, id: int, patch: list[dict[str, Any]]) -> ToolOutput:
    document = _checked_patch(patch)
    fix = ("The patch did not apply, nothing changed: check field reference names (System.State) and values the "
           "process allows (states New, Active, Resolved, Closed). " + PATCH_HINT)
    hint = {400: fix, 409: fix, 412: "The work item changed since the revision the patch tests for, nothing changed: "
            "devops_work_item_get shows its current rev; build the patch on that."}
    try:
        body = azure.devops().send("PATCH", _update_url(azure, project, id), document, content_type=JSON_PATCH,
                                   hint=hint).body or {}
    except DevOpsRequestError as exc:
        if exc.status == 404:
            exc.hint = _not_found_hint(project, id)
        raise
    item = _slim(body)
    return ToolOutput(f"Updated work item {item.get('id')} to revision {item.get('rev')} ({len(document)} operation(s)).",
                      item)


def _plan_update(azure: AzureSession, project: str, id: int, patch: list[dict[str, Any]]) -> list[PlannedRequest]:
    _checked_patch(patch)
    return [PlannedRequest("PATCH", _update_url(azure, project, id))]


# -- devops_work_item_comment ------------------------------------------------------------------


def _comment_url(azure: AzureSession, project: str, id: int) -> str:
    return azure.devops().project_url(project, f"wit/workItems/{_work_item_id(id)}/comments",
                                      api_version=COMMENTS_API_VERSION)


def _checked_text(text: str) -> str:
    if not text.strip():
        raise ToolInputError("The comment is empty.")
    if len(text) > MAX_TEXT:
        raise ToolInputError(f"The comment is {len(text)} characters; at most {MAX_TEXT}.")
    return text


def devops_work_item_comment(azure: AzureSession, project: str, id: int, text: str) -> ToolOutput:
    body = azure.devops().send("POST", _comment_url(azure, project, id), {"text": _checked_text(text)},
                               hint=_not_found_hint(project, id)).body or {}
    comment = {k: body.get(k) for k in ("id", "workItemId", "text", "createdDate") if body.get(k) is not None}
    comment["createdBy"] = identity(body.get("createdBy"))
    return ToolOutput(f"Commented on work item {id} (comment {comment.get('id')}).",
                      {k: v for k, v in comment.items() if v is not None})


def _plan_comment(azure: AzureSession, project: str, id: int, text: str) -> list[PlannedRequest]:
    _checked_text(text)
    return [PlannedRequest("POST", _comment_url(azure, project, id))]


TOOLS = (
    AzureTool(
        name="devops_work_item_get",
        description="A work item: rev, fields, relations.",
        run=devops_work_item_get,
        plan=_plan_get,
        operations=(DeclaredOperation(WORK_ITEMS_READ),),
        output_schema=_WORK_ITEM,
    ),
    AzureTool(
        name="devops_work_item_query",
        description="Work items a WIQL query finds (SELECT [System.Id] FROM WorkItems WHERE ...).",
        run=devops_work_item_query,
        plan=_plan_query,
        operations=(DeclaredOperation(WIQL_READ), DeclaredOperation(WORK_ITEMS_READ)),
        output_schema=LISTING,
    ),
    AzureTool(
        name="devops_work_item_create",
        description="Create a work item (type Bug, Task...); fields by reference name.",
        run=devops_work_item_create,
        plan=_plan_create,
        operations=(DeclaredOperation(WORK_ITEMS_WRITE),),
        read_only=False,
        idempotent=False,
        output_schema=_WORK_ITEM,
    ),
    AzureTool(
        name="devops_work_item_update",
        description="Change a work item by JSON Patch ([{op, path, value}]).",
        run=devops_work_item_update,
        plan=_plan_update,
        operations=(DeclaredOperation(WORK_ITEMS_WRITE),),
        read_only=False,
        destructive=True,
        idempotent=False,
        output_schema=_WORK_ITEM,
    ),
    AzureTool(
        name="devops_work_item_comment",
        description="Add a comment to a work item.",
        run=devops_work_item_comment,
        plan=_plan_comment,
        operations=(DeclaredOperation(COMMENTS_WRITE),),
        read_only=False,
        idempotent=False,
        output_schema=obj(("id",), id=INTEGER),
    ),
)
