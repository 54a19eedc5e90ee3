"""How Azure DevOps names a person: IdentityRef in resources, Identity in the identities API.

``id`` is Azure DevOps' own identity id (a VSID), not the Entra object id; ``uniqueName`` is the
UPN and ``descriptor`` the subject descriptor (``aad.`` + a base64 key). The Entra object id
appears only as the identity's ``originId`` in the identities API, as in the service.
"""

from __future__ import annotations

import base64
from typing import Any

from azure_agent_mcp.sandbox.devops_world import Member


def descriptor(member: Member) -> str:
    raw = base64.b64encode(member.object_id.encode()).decode().rstrip("=")
    return "aad." + raw


def identity_ref(member: Member, org_url: str, vssps_url: str) -> dict[str, Any]:
    return {
        "displayName": member.display_name,
        "url": f"{vssps_url}/_apis/Identities/{member.vsid}",
        "_links": {"avatar": {"href": f"{org_url}/_apis/GraphProfile/MemberAvatars/{descriptor(member)}"}},
        "id": member.vsid,
        "uniqueName": member.upn,
        "imageUrl": f"{org_url}/_apis/GraphProfile/MemberAvatars/{descriptor(member)}",
        "descriptor": descriptor(member),
    }


def identity(member: Member, tenant_id: str) -> dict[str, Any]:
    """An Identity as ``GET {vssps}/{org}/_apis/identities`` returns it."""
    return {
        "id": member.vsid,
        "descriptor": f"Microsoft.IdentityModel.Claims.ClaimsIdentity;{tenant_id}\\{member.upn}",
        "subjectDescriptor": descriptor(member),
        "providerDisplayName": member.display_name,
        "isActive": True,
        "isContainer": False,
        "members": [],
        "memberOf": [],
        "memberIds": [],
        "properties": {
            "SchemaClassName": {"$type": "System.String", "$value": "User"},
            "Description": {"$type": "System.String", "$value": ""},
            "Domain": {"$type": "System.String", "$value": tenant_id},
            "Account": {"$type": "System.String", "$value": member.upn},
            "Mail": {"$type": "System.String", "$value": member.upn},
            "DirectoryAlias": {"$type": "System.String", "$value": member.upn.split("@")[0]},
            "originId": {"$type": "System.String", "$value": member.object_id},
        },
        "resourceVersion": 2,
        "metaTypeId": 0,
    }
