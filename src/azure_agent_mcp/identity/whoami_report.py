"""Who the agent is acting as, and what its token says about the agent: never the token itself.

(Not named whoami.py: a submodule of that name would shadow the `whoami` function on the package.)

The principal and the agent markers are read from the ARM token's claims without verifying the
signature: Azure verifies tokens, we only describe what we are about to present.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from azure_agent_mcp.identity.agentic_claims import describe_agentic
from azure_agent_mcp.identity.claims import SESSION_MARKERS, agent_markers, unverified_jwt_claims

PRINCIPAL_CLAIMS = ("tid", "oid", "upn", "appid", "idtyp", "name")
WORKLOAD_NOTE = "workload identity: tokens carry no agent-session tag"


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def whoami(credential: Any, env: Any, session: Any, *, devops: bool = False) -> dict[str, Any]:
    """A JSON-safe description of the session, the credential, the principal and the agent markers.

    Acquires (or reuses) the session's ARM token; raises what the credential raises (session
    expired, sign-in failed), except a pinning refusal: then the report describes the refused
    token's principal and ``pinning.match`` is false.

    ``devops``: also describe the Azure DevOps token's principal (``info["devops"]``). One more
    token request per session, which the Azure DevOps tools reuse; off unless they are configured.
    A failure there is reported, not raised: ARM's answer above is still true.
    """
    from azure_agent_mcp.identity.pinning import IdentityMismatchError

    mismatch: IdentityMismatchError | None = None
    try:
        token = credential.get_token(env.arm_scope)
        claims = unverified_jwt_claims(token.token)
        expires_on: float | None = token.expires_on
    except IdentityMismatchError as exc:
        mismatch, claims, expires_on = exc, dict(exc.presented), None
    principal = {name: claims[name] for name in PRINCIPAL_CLAIMS if name in claims}
    if "upn" in principal:
        principal.pop("appid", None)  # a user: the client app id is not who is acting
    elif "appid" not in principal and "azp" in claims:
        principal["appid"] = claims["azp"]
    markers = agent_markers(claims)
    tagged = bool(getattr(credential, "tagged", False))
    session_marked = {name: markers[name] for name in SESSION_MARKERS if name in markers}
    describe = getattr(credential, "describe", None)
    details = describe() if callable(describe) else {"kind": getattr(credential, "kind", "unknown")}
    info: dict[str, Any] = {
        "session": session.to_dict(),
        "credential": {k: v for k, v in details.items() if k != "note"},
        "environment": {
            "name": env.name,
            "authority_host": env.authority_host,
            "arm_endpoint": env.arm_endpoint,
            "tenant_id": env.tenant_id,
            "subscription": env.default_subscription,
        },
        "principal": principal,
        "agent_markers": markers,
        "token": {
            "scope": env.arm_scope,
            "expires_on": _iso(expires_on),
            "issued_at": _iso(claims["iat"]) if isinstance(claims.get("iat"), (int, float)) else None,
            "uti": claims.get("uti"),
            "readable": bool(claims),
        },
        "tagged": tagged,
        "session_in_token": bool(session_marked) and all(str(v) == session.id for v in session_marked.values()),
    }
    agentic = describe_agentic(claims)
    if agentic is not None:
        info["agentic"] = agentic
    expected = getattr(credential, "expected_principal", None)
    if expected:
        info["pinning"] = {"expected": expected, "source": getattr(credential, "pin_source", None),
                           "match": mismatch is None}
        if mismatch is not None:
            info["pinning"]["presented"] = dict(mismatch.presented)
            info["pinning"]["message"] = str(mismatch.message)
    if devops:
        info["devops"] = audience_report(credential, env.devops_scope, session, arm_claims=claims)
    if not tagged:
        info["note"] = agentic["description"] if agentic is not None else WORKLOAD_NOTE
    elif not session_marked:
        info["note"] = "the credential asks for an agent-session tag, but this token carries none"
    return info


def audience_report(credential: Any, scope: str, session: Any, *, arm_claims: dict[str, Any]) -> dict[str, Any]:
    """Who a second audience's token (Azure DevOps) is for, and whether it is the ARM token's principal.

    Never the token; a refusal (pinning, consent, a sidecar without that API) becomes ``error``.
    """
    from azure_agent_mcp.identity.pinning import IdentityMismatchError

    report: dict[str, Any] = {"scope": scope}
    try:
        token = credential.get_token(scope)
    except IdentityMismatchError as exc:
        claims = dict(exc.presented)
        report["pinning"] = {"match": False, "presented": claims}
        report["error"] = str(exc.message)
    except Exception as exc:  # noqa: BLE001 - described, not raised: ARM's report stands
        report["error"] = f"{type(exc).__name__}: {str(getattr(exc, 'message', None) or exc).splitlines()[0][:400]}"
        return report
    else:
        claims = unverified_jwt_claims(token.token)
        if getattr(credential, "expected_principal", None):
            report["pinning"] = {"match": True}
    principal = {name: claims[name] for name in PRINCIPAL_CLAIMS if name in claims}
    if "upn" in principal:
        principal.pop("appid", None)
    elif "appid" not in principal and "azp" in claims:
        principal["appid"] = claims["azp"]
    marked = {name: markers for name, markers in agent_markers(claims).items() if name in SESSION_MARKERS}
    report.update({
        "audience": claims.get("aud"),
        "principal": principal,
        "same_principal_as_arm": bool(claims.get("oid")) and claims.get("oid") == arm_claims.get("oid"),
        "session_in_token": bool(marked) and all(str(v) == session.id for v in marked.values()),
    })
    return report


def whoami_lines(info: dict[str, Any]) -> list[str]:
    """The readable form ``azure-agent-mcp whoami`` prints."""
    session = info["session"]
    principal = info.get("principal") or {}
    credential = info.get("credential") or {}
    who = principal.get("upn") or principal.get("appid") or principal.get("oid") or "unknown principal"
    expires = session.get("expires_at") or "never"
    lines = [
        f"session      {session['id']} ({session['origin']}), created {session['created_at']}, expires {expires}",
        f"credential   {credential.get('kind', '?')}, {'tagged' if info.get('tagged') else 'not tagged'}",
        f"principal    {who} ({principal.get('idtyp', '?')}), oid {principal.get('oid', '?')}, tenant {principal.get('tid', '?')}",
    ]
    agentic = info.get("agentic")
    if agentic:
        lines.append(f"acting as    {agentic['summary']}: {agentic['description']}")
    pinning = info.get("pinning")
    if pinning and pinning.get("match"):
        lines.append(f"pinned to    {pinning['expected']} ({pinning.get('source')}): token matches")
    elif pinning:
        presented = pinning.get("presented") or {}
        shown = presented.get("upn") or presented.get("appid") or presented.get("azp") or presented.get("oid") or "?"
        lines.append(f"pinned to    {pinning['expected']} ({pinning.get('source')}): MISMATCH, the token is for "
                     f"{shown} (oid {presented.get('oid', '?')}); it is refused")
    markers = info.get("agent_markers") or {}
    if markers:
        lines.append("agent marks  " + ", ".join(f"{k}={v}" for k, v in sorted(markers.items())))
    else:
        lines.append("agent marks  none")
    if pinning and not pinning.get("match"):
        lines.append(f"token        refused by identity pinning, for {info['token'].get('scope')}")
    else:
        lines.append(f"token        expires {info['token'].get('expires_on')}, for {info['token'].get('scope')}")
    devops = info.get("devops")
    if devops is not None:
        lines.append("azure devops " + _devops_line(devops))
    if info.get("note"):
        lines.append(f"note         {info['note']}")
    return lines


def _devops_line(report: dict[str, Any]) -> str:
    if "principal" not in report:
        return f"no token: {report.get('error', 'unknown error')}"
    principal = report["principal"]
    who = principal.get("upn") or principal.get("appid") or principal.get("oid") or "unknown principal"
    if report.get("pinning", {}).get("match") is False:
        return f"MISMATCH, the token is for {who} (oid {principal.get('oid', '?')}); it is refused"
    same = "same principal as ARM" if report.get("same_principal_as_arm") else "NOT the ARM token's principal"
    tag = ", session-tagged" if report.get("session_in_token") else ""
    return f"{who} (oid {principal.get('oid', '?')}), audience {report.get('audience')}, {same}{tag}"
