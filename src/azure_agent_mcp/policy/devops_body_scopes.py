"""Azure DevOps writes whose body reaches work items beyond the scope in their path.

Creating a pull request with ``workItemRefs`` links each named work item to it: Azure DevOps adds
an artifact link to the work item, a write to that item. A work item created with a relation
(``/relations/...`` in its JSON Patch, e.g. a parent) writes the reverse link onto the other item.
Work item ids are organization-wide, so the path's project or repository says nothing about where
those writes land: such a request is decided at its path's scope *and* at the organization, the
most restrictive decision winning, as the routes that address a work item by id already are. A
fence on one project or repository then refuses the link instead of letting an id walk through it.

The body is read strictly (a body that is not UTF-8 JSON, or a key spelled in another case, is
refused rather than guessed at), with ``body_scopes``' reader.
"""

from __future__ import annotations

import json
from typing import Any

from azure_agent_mcp.policy.body_scopes import BodyScopeError, _no_duplicates, _text

# Operations (lower-cased) whose body may link work items, with what in the body does.
PULL_REQUEST_WRITE = "azuredevops/git/repositories/pullrequests/write"
WORK_ITEM_WRITE = "azuredevops/wit/workitems/write"
DEVOPS_BODY_SCOPED = frozenset({PULL_REQUEST_WRITE, WORK_ITEM_WRITE})
HINT = ("A pull request that links work items (workItemRefs), or a work item created with a relation, writes onto "
        "those work items, which can be in any project: the policy must allow the operation at the organization.")


def _document(body: Any) -> Any:
    try:
        return json.loads(_text(body), object_pairs_hook=_no_duplicates)
    except BodyScopeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise BodyScopeError(f"the body is not JSON ({str(exc)[:80]})") from None


def _links_pull_request(document: Any) -> bool:
    if not isinstance(document, dict):
        raise BodyScopeError("a pull request body is a JSON object")
    for key, value in document.items():
        if key.lower() == "workitemrefs":
            if key != "workItemRefs":
                raise BodyScopeError(f"the key '{key[:40]}' must be spelled 'workItemRefs'")
            return value not in (None, [])
    return False


def _links_work_item(document: Any) -> bool:
    if not isinstance(document, list):
        raise BodyScopeError("a work item body is a JSON Patch document (a JSON list)")
    for operation in document:
        if not isinstance(operation, dict):
            raise BodyScopeError("each JSON Patch operation is a JSON object")
        for key in ("path", "from"):
            target = operation.get(key)
            if target is not None and (not isinstance(target, str) or target.strip().lower().startswith("/relations")):
                return True
    return False


def devops_body_scopes(operation: str, scope: str, body: Any) -> tuple[str, ...]:
    """``(scope,)``, or ``(scope, organization)`` when the body links work items; BodyScopeError when unreadable."""
    folded = operation.lower()
    if body is None or body == b"" or body == "":
        return (scope,)
    document = _document(body)
    links = _links_pull_request(document) if folded == PULL_REQUEST_WRITE else _links_work_item(document)
    organization = "/".join(scope.split("/")[:3])  # /organizations/{org}
    return (scope, organization) if links and organization != scope else (scope,)
