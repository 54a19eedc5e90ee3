"""Azure DevOps work item tracking: work items (JSON Patch), types, WIQL and comments.

Work item ids are the organization's, as in the service (Microsoft's own "Work Items - Get"
sample asks one project's route for an item of another project and gets it): a route under any
project reaches any work item of a project the caller is a member of; others answer TF401232, as
an id the caller may not read. The product's guard therefore decides those routes at the
organization. ``System.CreatedBy``/``ChangedBy`` and comment authors are the token's principal.
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.sandbox.devops_errors import DevOpsFailure, bad_request
from azure_agent_mcp.sandbox.devops_fields import FIELDS, field_named
from azure_agent_mcp.sandbox.devops_patch import apply_patch
from azure_agent_mcp.sandbox.devops_routes import Call, Route, integer, is_digits, listing, now_iso
from azure_agent_mcp.sandbox.devops_wiql import parse, sort_key
from azure_agent_mcp.sandbox.devops_world import WORK_ITEM_TYPES, WorkItem, WorkItemComment
from azure_agent_mcp.sandbox.protocol import Response, json_response

MAX_IDS = 200
_REASONS = {"New": "New", "Active": "Implementation started", "Resolved": "Code complete and unit tests pass",
            "Closed": "Acceptance tests pass"}
_TYPE_COLORS = {"Bug": "CC293D", "Task": "F2CB1D", "User Story": "009CCC", "Epic": "FF7B00", "Feature": "773B93"}


def _not_found(wid: Any) -> DevOpsFailure:
    return DevOpsFailure(404, "WorkItemUnauthorizedAccessException",
                         f"TF401232: Work item {str(wid)[:20]} does not exist, or you do not have permissions to read "
                         "it.")


def _visible(call: Call, wid: int) -> WorkItem | None:
    item = call.org.work_items.get(wid)
    if item is None or call.org.project_by_id(item.project_id).name.lower() not in call.member.roles:
        return None
    return item


def _item_url(call: Call, wid: int) -> str:
    item = call.org.work_items.get(wid)
    project = item.project_id if item is not None else call.project_url.rsplit("/", 1)[-1]
    return f"{call.org_url}/{project}/_apis/wit/workItems/{wid}"


def work_item_json(call: Call, item: WorkItem, fields: list[str] | None = None, expand: str = "none") -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    for reference, value in item.fields.items():
        field = FIELDS.get(reference.lower())
        if fields is not None and reference.lower() not in fields:
            continue
        if value is None:
            continue
        rendered[reference] = call.ref(value) if field is not None and field.kind == "identity" else value
    if fields is not None and "system.id" in fields:
        rendered["System.Id"] = item.work_item_id
    if fields is not None and "system.rev" in fields:
        rendered["System.Rev"] = item.rev
    url = _item_url(call, item.work_item_id)
    body: dict[str, Any] = {"id": item.work_item_id, "rev": item.rev, "fields": rendered}
    if expand in ("relations", "all") and item.relations:
        body["relations"] = item.relations
    if expand in ("links", "all") or fields is None:
        body["_links"] = {
            "self": {"href": url}, "workItemUpdates": {"href": f"{url}/updates"},
            "workItemRevisions": {"href": f"{url}/revisions"}, "workItemComments": {"href": f"{url}/comments"},
            "html": {"href": f"{call.org_url}/{call.project.name if call.project else ''}/_workitems/edit/"
                             f"{item.work_item_id}"},
            "workItemType": {"href": f"{call.project_url}/_apis/wit/workItemTypes/"
                                     f"{item.fields.get('System.WorkItemType')}"},
            "fields": {"href": f"{call.project_url}/_apis/wit/fields"},
        }
    body["url"] = url
    return body


def _requested_fields(call: Call, raw: Any) -> list[str] | None:
    if raw in (None, ""):
        return None
    names = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(names, list):
        raise bad_request("fields must be a comma-separated list of field reference names.")
    out = []
    for name in names:
        field = field_named(str(name))
        if field is None:
            raise bad_request(f"TF51535: Cannot find field {str(name)[:120]}.", "WorkItemFieldInvalidException")
        out.append(field.reference.lower())
    return out


def _expand(call: Call, raw: Any, fields: list[str] | None) -> str:
    expand = str(raw or "none").lower()
    if expand not in ("none", "relations", "fields", "links", "all"):
        raise bad_request(f"The $expand value '{expand[:20]}' is not valid: use none, relations, fields, links or all.")
    if fields is not None and expand != "none":
        raise bad_request("The expand parameter can not be used with the fields parameter.",
                          "VssPropertyValidationException")
    return expand


def _get(call: Call) -> Response:
    wid = integer(call.args["id"], "id")
    item = _visible(call, wid)
    if item is None:
        raise _not_found(wid)
    fields = _requested_fields(call, call.query("fields"))
    return json_response(200, work_item_json(call, item, fields, _expand(call, call.query("$expand"), fields)))


def _many(call: Call, ids: list[int], fields: list[str] | None, expand: str, policy: str) -> Response:
    if not ids:
        raise bad_request("Name the work items: ids=1,2,3 (at most 200).")
    if len(ids) > MAX_IDS:
        raise bad_request(f"VS402337: At most {MAX_IDS} work items can be read at once; {len(ids)} were asked for.")
    out: list[Any] = []
    for wid in ids:
        item = _visible(call, wid)
        if item is None:
            if policy != "omit":
                raise _not_found(wid)
            out.append(None)
        else:
            out.append(work_item_json(call, item, fields, expand))
    return listing(out)


def _ids(raw: Any) -> list[int]:
    parts = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(parts, list):
        raise bad_request("ids must be a comma-separated list of work item ids.")
    ids = []
    for part in parts:
        text = str(part).strip()
        if not is_digits(text):
            raise bad_request(f"The work item id '{text[:20]}' is not valid: ids are positive integers.")
        ids.append(int(text))
    return ids


def _list(call: Call) -> Response:
    fields = _requested_fields(call, call.query("fields"))
    expand = _expand(call, call.query("$expand"), fields)
    policy = (call.query("errorPolicy") or "fail").lower()
    return _many(call, _ids(call.query("ids") or ""), fields, expand, policy)


def _batch(call: Call) -> Response:
    body = call.json_object("workItemGetRequest")
    fields = _requested_fields(call, body.get("fields"))
    expand = _expand(call, body.get("$expand"), fields)
    return _many(call, _ids(body.get("ids") or []), fields, expand, str(body.get("errorPolicy") or "fail").lower())


def _patch_document(call: Call) -> Any:
    content_type = call.request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json-patch+json":
        raise DevOpsFailure(415, "VssRequestContentTypeNotSupportedException",
                            f"The request indicated a Content-Type of \"{content_type[:80]}\" for method type "
                            f"\"{call.request.method}\" which is not supported. Valid content types for this method "
                            "are: application/json-patch+json.")
    return call.body()


def _work_type(call: Call, name: str) -> str:
    found = next((t for t in WORK_ITEM_TYPES if t.lower() == name.lower()), None)
    if found is None:
        assert call.project is not None
        raise DevOpsFailure(404, "WorkItemTypeNotFoundException",
                            f"VS402323: Work item type {name[:100]} does not exist in project {call.project.name} or "
                            "you do not have permission to access it. Types: " + ", ".join(WORK_ITEM_TYPES) + ".")
    return found


def _save(call: Call, item: WorkItem, history: list[str]) -> None:
    for text in history:
        item.comments.append(WorkItemComment(len(item.comments) + 1, text, call.member.object_id, now_iso()))
    item.fields["System.CommentCount"] = len(item.comments)


def _create(call: Call) -> Response:
    assert call.project is not None
    kind = _work_type(call, call.args["type"])
    document = _patch_document(call)
    now = now_iso()
    wid = call.org.next_work_item
    base = {"System.AreaPath": call.project.name, "System.TeamProject": call.project.name,
            "System.IterationPath": call.project.name, "System.WorkItemType": kind,
            "System.State": WORK_ITEM_TYPES[kind][0], "System.Reason": "New", "System.CreatedDate": now,
            "System.CreatedBy": call.member.object_id, "System.ChangedDate": now,
            "System.ChangedBy": call.member.object_id, "System.CommentCount": 0,
            "Microsoft.VSTS.Common.Priority": 2}
    draft = apply_patch(call.org, call.project, kind, base, [], 1, document)
    if draft.fields.get("System.State") != base["System.State"] and draft.fields.get("System.Reason") == "New":
        draft.fields["System.Reason"] = _REASONS.get(draft.fields["System.State"], "New")
    item = WorkItem(wid, call.project.project_id, 1, draft.fields, draft.relations)
    if (call.query("validateOnly") or "").lower() == "true":
        return json_response(200, work_item_json(call, item, expand="all"))
    call.org.next_work_item += 1
    call.org.work_items[wid] = item
    _save(call, item, draft.history)
    call.log["work_item"] = wid
    return json_response(200, work_item_json(call, item, expand="all"))


def _update(call: Call) -> Response:
    assert call.project is not None
    wid = integer(call.args["id"], "id")
    item = _visible(call, wid)
    if item is None:
        raise _not_found(wid)
    document = _patch_document(call)
    kind = item.fields["System.WorkItemType"]
    draft = apply_patch(call.org, call.project, kind, item.fields, item.relations, item.rev, document)
    if draft.fields.get("System.State") != item.fields.get("System.State"):
        if draft.fields.get("System.Reason") == item.fields.get("System.Reason"):
            draft.fields["System.Reason"] = _REASONS.get(draft.fields["System.State"], "")
    if (call.query("validateOnly") or "").lower() == "true":
        preview = WorkItem(wid, item.project_id, item.rev, draft.fields, draft.relations)
        return json_response(200, work_item_json(call, preview, expand="all"))
    draft.fields["System.ChangedDate"] = now_iso()
    draft.fields["System.ChangedBy"] = call.member.object_id
    item.fields, item.relations = draft.fields, draft.relations
    item.rev += 1
    _save(call, item, draft.history)
    call.log["work_item"] = wid
    return json_response(200, work_item_json(call, item, expand="all"))


def _delete(call: Call) -> Response:
    """To the recycle bin, as the service does; the sandbox keeps no recycle bin to restore from."""
    assert call.project is not None
    wid = integer(call.args["id"], "id")
    item = _visible(call, wid)
    if item is None:
        raise _not_found(wid)
    if (call.query("destroy") or "").lower() == "true":
        raise bad_request("Destroying a work item permanently needs the project administrator's permission, which "
                          "no sandbox member has.", "WorkItemUnauthorizedAccessException")
    del call.org.work_items[wid]
    call.log["work_item"] = wid
    return json_response(200, {"id": wid, "project": call.project.name,
                               "type": item.fields.get("System.WorkItemType"), "name": item.fields.get("System.Title"),
                               "deletedBy": f"{call.member.display_name} <{call.member.upn}>",
                               "deletedDate": now_iso(), "code": 200,
                               "url": f"{call.project_url}/_apis/wit/recycleBin/{wid}"})


def _wiql(call: Call) -> Response:
    assert call.project is not None
    body = call.json_object("wiql")
    query = parse(body.get("query"), call.org, call.member.object_id, call.project.name)
    top = integer(call.query("$top") or "20000", "$top")
    items = [i for i in call.org.work_items.values() if i.project_id == call.project.project_id and query.predicate(i)]
    items.sort(key=lambda i: sort_key(i, query.order))
    column = lambda f: {"referenceName": f.reference, "name": f.name,  # noqa: E731
                        "url": f"{call.org_url}/_apis/wit/fields/{f.reference}"}
    return json_response(200, {
        "queryType": "flat", "queryResultType": "workItem", "asOf": now_iso(),
        "columns": [column(f) for f in query.columns],
        "sortColumns": [{"field": column(f), "descending": d} for f, d in query.order],
        "workItems": [{"id": i.work_item_id, "url": _item_url(call, i.work_item_id)} for i in items[:top]],
    })


def _type_json(call: Call, name: str) -> dict[str, Any]:
    states = [{"name": s, "color": "b2b2b2" if s == "New" else "007acc",
               "category": {"New": "Proposed", "Active": "InProgress", "Resolved": "Resolved",
                            "Closed": "Completed"}[s]} for s in WORK_ITEM_TYPES[name]]
    return {"name": name, "referenceName": f"Microsoft.VSTS.WorkItemTypes.{name.replace(' ', '')}",
            "description": f"The Agile process's {name}.", "color": _TYPE_COLORS[name], "isDisabled": False,
            "states": states, "url": f"{call.project_url}/_apis/wit/workItemTypes/{name}"}


def _types(call: Call) -> Response:
    return listing([_type_json(call, t) for t in WORK_ITEM_TYPES])


def _type(call: Call) -> Response:
    return json_response(200, _type_json(call, _work_type(call, call.args["type"])))


def _comment_json(call: Call, item: WorkItem, comment: WorkItemComment) -> dict[str, Any]:
    return {"workItemId": item.work_item_id, "id": comment.comment_id, "version": comment.version,
            "text": comment.text, "createdBy": call.ref(comment.created_by), "createdDate": comment.created_date,
            "modifiedBy": call.ref(comment.created_by), "modifiedDate": comment.created_date,
            "url": f"{_item_url(call, item.work_item_id)}/comments/{comment.comment_id}"}


def _comments(call: Call) -> Response:
    wid = integer(call.args["id"], "id")
    item = _visible(call, wid)
    if item is None:
        raise _not_found(wid)
    comments = [_comment_json(call, item, c) for c in reversed(item.comments)]
    return json_response(200, {"totalCount": len(comments), "count": len(comments), "comments": comments})


def _comment_create(call: Call) -> Response:
    wid = integer(call.args["id"], "id")
    item = _visible(call, wid)
    if item is None:
        raise _not_found(wid)
    body = call.json_object("request")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > 150_000:
        raise bad_request("The comment needs a non-empty \"text\" (at most 150,000 characters).")
    comment = WorkItemComment(len(item.comments) + 1, text, call.member.object_id, now_iso())
    item.comments.append(comment)
    item.fields["System.CommentCount"] = len(item.comments)
    call.log["work_item"] = wid
    return json_response(200, _comment_json(call, item, comment))


_W = "AzureDevOps/wit/workItems"
ROUTES = (
    Route("GET", ("wit", "workitems", "{id}"), f"{_W}/read", _get),
    Route("GET", ("wit", "workitems"), f"{_W}/read", _list),
    Route("POST", ("wit", "workitemsbatch"), "AzureDevOps/wit/workItemsBatch/read", _batch),
    Route("POST", ("wit", "workitems", "{$type}"), f"{_W}/write", _create),
    Route("PATCH", ("wit", "workitems", "{id}"), f"{_W}/write", _update),
    Route("DELETE", ("wit", "workitems", "{id}"), f"{_W}/delete", _delete),
    Route("POST", ("wit", "wiql"), "AzureDevOps/wit/wiql/read", _wiql),
    Route("GET", ("wit", "workitemtypes"), "AzureDevOps/wit/workItemTypes/read", _types),
    Route("GET", ("wit", "workitemtypes", "{type}"), "AzureDevOps/wit/workItemTypes/read", _type),
    Route("GET", ("wit", "workitems", "{id}", "comments"), f"{_W}/comments/read", _comments, preview_only=True),
    Route("POST", ("wit", "workitems", "{id}", "comments"), f"{_W}/comments/write", _comment_create,
          preview_only=True),
)
