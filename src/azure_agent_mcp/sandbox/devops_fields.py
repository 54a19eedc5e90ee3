"""The work item fields the sandbox's Agile process knows: reference name, friendly name, type, writability.

Identity fields hold the member's Entra object id internally and are rendered as IdentityRef;
a value written to one may name the member by UPN, display name or ``Display Name <upn>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure_agent_mcp.sandbox.devops_world import Member, Organization


@dataclass(frozen=True)
class Field:
    reference: str
    name: str
    kind: str  # string | html | integer | double | dateTime | identity | treePath | plainText
    read_only: bool = False


FIELDS: dict[str, Field] = {f.reference.lower(): f for f in (
    Field("System.Id", "ID", "integer", True),
    Field("System.Rev", "Rev", "integer", True),
    Field("System.AreaPath", "Area Path", "treePath"),
    Field("System.TeamProject", "Team Project", "string", True),
    Field("System.IterationPath", "Iteration Path", "treePath"),
    Field("System.WorkItemType", "Work Item Type", "string", True),
    Field("System.State", "State", "string"),
    Field("System.Reason", "Reason", "string"),
    Field("System.AssignedTo", "Assigned To", "identity"),
    Field("System.CreatedDate", "Created Date", "dateTime", True),
    Field("System.CreatedBy", "Created By", "identity", True),
    Field("System.ChangedDate", "Changed Date", "dateTime", True),
    Field("System.ChangedBy", "Changed By", "identity", True),
    Field("System.CommentCount", "Comment Count", "integer", True),
    Field("System.Title", "Title", "string"),
    Field("System.Description", "Description", "html"),
    Field("System.History", "History", "html"),
    Field("System.Tags", "Tags", "plainText"),
    Field("Microsoft.VSTS.Common.Priority", "Priority", "integer"),
    Field("Microsoft.VSTS.Common.Severity", "Severity", "string"),
    Field("Microsoft.VSTS.Common.ValueArea", "Value Area", "string"),
    Field("Microsoft.VSTS.Common.AcceptanceCriteria", "Acceptance Criteria", "html"),
    Field("Microsoft.VSTS.TCM.ReproSteps", "Repro Steps", "html"),
    Field("Microsoft.VSTS.Scheduling.StoryPoints", "Story Points", "double"),
    Field("Microsoft.VSTS.Scheduling.RemainingWork", "Remaining Work", "double"),
    Field("Microsoft.VSTS.Scheduling.OriginalEstimate", "Original Estimate", "double"),
)}
_BY_NAME = {f.name.lower(): f for f in FIELDS.values()}


def field_named(name: str) -> Field | None:
    """A field by reference name or friendly name, case-insensitively (WIQL and JSON Patch accept both)."""
    lowered = name.strip().lower()
    return FIELDS.get(lowered) or _BY_NAME.get(lowered)


def member_named(org: Organization, value: str) -> Member | None:
    text = value.strip()
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1:-1]
    lowered = text.lower()
    for member in org.members.values():
        if lowered in (member.upn.lower(), member.display_name.lower(), member.object_id.lower(), member.vsid):
            return member
    return None


def identity_matches(org: Organization, stored: Any, value: str) -> bool:
    member = org.member(str(stored)) if stored else None
    wanted = member_named(org, value)
    return member is not None and wanted is not None and member.object_id == wanted.object_id
