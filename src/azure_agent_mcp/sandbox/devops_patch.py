"""JSON Patch (RFC 6902) as the work item API applies it: all operations or none.

The document is applied to a copy of the work item's fields and relations; the first operation
that does not apply (an unknown or read-only field, a failing ``test``, a bad relation) refuses
the whole patch with the service's error, and the stored work item is untouched.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any

from azure_agent_mcp.sandbox.devops_errors import DevOpsFailure, bad_request
from azure_agent_mcp.sandbox.devops_fields import field_named, identity_matches, member_named
from azure_agent_mcp.sandbox.devops_routes import is_digits
from azure_agent_mcp.sandbox.devops_world import WORK_ITEM_TYPES, Organization, Project

RELATION_TYPES = frozenset({
    "System.LinkTypes.Hierarchy-Forward", "System.LinkTypes.Hierarchy-Reverse", "System.LinkTypes.Related",
    "System.LinkTypes.Dependency-Forward", "System.LinkTypes.Dependency-Reverse", "ArtifactLink", "Hyperlink",
})
_WORK_ITEM_URL = re.compile(r"/_apis/wit/workitems/([0-9]{1,9})$", re.IGNORECASE)
_OPS = ("add", "replace", "remove", "test")
MAX_OPERATIONS = 500
MAX_VALUE = 1_000_000
INVALID_DOCUMENT = "You must pass a valid patch document in the body of the request."


@dataclass
class Draft:
    """The work item being patched: fields (identities as object ids), relations, rev, and new History."""

    fields: dict[str, Any]
    relations: list[dict[str, Any]]
    rev: int
    history: list[str]


def _invalid(detail: str) -> DevOpsFailure:
    return bad_request(f"{INVALID_DOCUMENT} {detail}", "VssPropertyValidationException")


def _coerce(org: Organization, project: Project, reference: str, kind: str, value: Any) -> Any:
    name = reference.rsplit(".", 1)[-1]
    if kind == "identity":
        if value in (None, ""):
            return None
        member = member_named(org, value if isinstance(value, str) else str(value.get("uniqueName", ""))
                              if isinstance(value, dict) else "")
        if member is None or project.name.lower() not in member.roles:
            raise bad_request(f"TF401320: Rule Error for field {name}. Error code: ValidIdentity, "
                              f"UnknownIdentity. The identity value '{str(value)[:80]}' is not a member of "
                              f"{project.name}.", "RuleValidationException")
        return member.object_id
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not is_digits(str(value).lstrip("-"), 18):
            raise bad_request(f"TF401320: Rule Error for field {name}. Error code: InvalidType. '{str(value)[:40]}' "
                              "is not an integer.", "RuleValidationException")
        return int(value)
    if kind == "double":
        try:
            number = float(value)
            if not math.isfinite(number) or isinstance(value, bool):
                raise ValueError(value)
            return number
        except (TypeError, ValueError, OverflowError) as exc:
            raise bad_request(f"TF401320: Rule Error for field {name}. Error code: InvalidType. "
                              f"'{str(value)[:40]}' is not a number.", "RuleValidationException") from exc
    if not isinstance(value, str):
        raise bad_request(f"TF401320: Rule Error for field {name}. Error code: InvalidType. The value must be a "
                          "string.", "RuleValidationException")
    if len(value) > MAX_VALUE:
        raise bad_request(f"The value of field {name} is too long.", "RuleValidationException")
    if kind == "treePath" and value.lower() != project.name.lower() and not value.lower().startswith(
            project.name.lower() + "\\"):
        raise bad_request(f"TF401347: Invalid tree name given for work item -1, field '{reference}'.",
                          "WorkItemFieldInvalidException")
    if kind == "string" and len(value) > 255:
        raise bad_request(f"TF401320: Rule Error for field {name}. Error code: InvalidLength (255).",
                          "RuleValidationException")
    return value


def _relation(org: Organization, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("rel"), str) or not isinstance(value.get("url"), str):
        raise _invalid("A relation is {\"rel\": \"System.LinkTypes.Related\", \"url\": \".../_apis/wit/workItems/7\"}.")
    if value["rel"] not in RELATION_TYPES:
        raise bad_request(f"VS402384: The link type name '{value['rel'][:80]}' is not recognized.",
                          "WorkItemFieldInvalidException")
    if value["rel"].startswith("System.LinkTypes."):
        match = _WORK_ITEM_URL.search(value["url"])
        if match is None or int(match.group(1)) not in org.work_items:
            raise bad_request(f"TF201036: You cannot add a link to work item '{value['url'][:120]}': it does not "
                              "exist.", "WorkItemFieldInvalidException")
    attributes = value.get("attributes") if isinstance(value.get("attributes"), dict) else {}
    return {"rel": value["rel"], "url": value["url"], "attributes": dict(attributes)}


def apply_patch(org: Organization, project: Project, work_type: str, fields: dict[str, Any],
                relations: list[dict[str, Any]], rev: int, document: Any) -> Draft:
    if not isinstance(document, list) or not document or len(document) > MAX_OPERATIONS:
        raise _invalid("Send a JSON array of operations: [{\"op\": \"add\", \"path\": \"/fields/System.Title\", "
                       "\"value\": \"...\"}].")
    draft = Draft(copy.deepcopy(fields), copy.deepcopy(relations), rev, [])
    for operation in document:
        if not isinstance(operation, dict) or not isinstance(operation.get("path"), str):
            raise _invalid("Each operation needs \"op\" and \"path\".")
        op = str(operation.get("op", "")).lower()
        path = operation["path"]
        if op not in _OPS:
            raise _invalid(f"The operation '{op[:20]}' is not supported: use add, replace, remove or test.")
        if op != "remove" and "value" not in operation:
            raise _invalid(f"The {op} operation on '{path[:80]}' needs a value.")
        value = operation.get("value")
        if path in ("/rev", "/id"):
            if op != "test":
                raise bad_request(f"TF401326: Invalid field status 'ReadOnly' for field "
                                  f"'{'System.Rev' if path == '/rev' else 'System.Id'}'.",
                                  "WorkItemFieldInvalidException")
            if path == "/rev" and value != rev:
                raise DevOpsFailure(412, "WorkItemRevisionMismatchException",
                                    f"TF26071: This work item has been changed by someone else since you opened it "
                                    f"(it is at revision {rev}, the patch tests for {str(value)[:20]}). You will have "
                                    "to refresh it and lose your changes.")
            continue
        if path.lower().startswith("/relations/"):
            index = path[len("/relations/"):]
            if op == "add" and index == "-":
                draft.relations.append(_relation(org, value))
            elif is_digits(index) and int(index) < len(draft.relations):
                if op == "remove":
                    draft.relations.pop(int(index))
                elif op in ("add", "replace"):
                    draft.relations[int(index)] = _relation(org, value)
                elif draft.relations[int(index)] != value:
                    raise _invalid(f"The test operation on '{path[:80]}' failed: the relation differs.")
            else:
                raise _invalid(f"The path '{path[:80]}' names no relation: use /relations/- to add one, or "
                               "/relations/<index>.")
            continue
        if not path.lower().startswith("/fields/"):
            raise _invalid(f"The path '{path[:80]}' is not a work item path: use /fields/<reference name>, "
                           "/relations/-, or /rev (test).")
        field = field_named(path[len("/fields/"):])
        if field is None:
            raise bad_request(f"TF51535: Cannot find field {path[len('/fields/'):][:120]}.",
                              "WorkItemFieldInvalidException")
        if field.read_only:
            raise bad_request(f"TF401326: Invalid field status 'ReadOnly' for field '{field.reference}'.",
                              "WorkItemFieldInvalidException")
        if op == "test":
            current = draft.fields.get(field.reference)
            same = (identity_matches(org, current, str(value)) if field.kind == "identity" and value
                    else current == value)
            if not same:
                raise _invalid(f"The test operation on '{path[:80]}' failed: the work item's value differs.")
        elif op == "remove":
            if field.reference in ("System.Title", "System.State"):
                raise bad_request(f"TF401320: Rule Error for field {field.name}. Error code: Required, InvalidEmpty.",
                                  "RuleValidationException")
            draft.fields.pop(field.reference, None)
        elif field.reference == "System.History":
            draft.history.append(_coerce(org, project, field.reference, "html", value))
        else:
            draft.fields[field.reference] = _coerce(org, project, field.reference, field.kind, value)
    _check_rules(draft, work_type)
    return draft


def _check_rules(draft: Draft, work_type: str) -> None:
    title = draft.fields.get("System.Title")
    if not isinstance(title, str) or not title.strip():
        raise bad_request("TF401320: Rule Error for field Title. Error code: Required, InvalidEmpty.",
                          "RuleValidationException")
    states = WORK_ITEM_TYPES[work_type]
    if draft.fields.get("System.State") not in states:
        raise bad_request(f"TF401320: Rule Error for field State. Error code: Required, HasValues, LimitedToValues, "
                          f"AllowsOldValue, InvalidEmpty. '{str(draft.fields.get('System.State'))[:40]}' is not a "
                          f"state of {work_type}: use one of {', '.join(states)}.", "RuleValidationException")
