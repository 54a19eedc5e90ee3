"""``policy show|check|explain`` and ``audit verify``.

Stdlib only at import time (the CLI's start-up path); the engine loads inside the handlers.
Exit codes: ``policy explain`` 0 allow, 3 deny, 4 confirm; ``policy check`` and ``audit verify``
0 when the policy loads / the chain is intact, 1 otherwise; 2 for usage errors (argparse).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from azure_agent_mcp.errors import CommandError

POLICY_ENV = "AZURE_AGENT_MCP_POLICY"
EXIT_FOR_EFFECT = {"allow": 0, "deny": 3, "confirm": 4}
PUBLIC_ARM = "https://management.azure.com"
PUBLIC_VAULT_TEMPLATE = "https://{vault}.vault.azure.net"
PUBLIC_LOGS = "https://api.loganalytics.io"
PUBLIC_DEVOPS = "https://dev.azure.com"
PUBLIC_DEVOPS_VSSPS = "https://vssps.dev.azure.com"


def register(subparsers: Any) -> None:
    policy = subparsers.add_parser(
        "policy",
        help="show, check and explain local policies",
        description="Show, check and explain the RBAC-shaped policy every Azure request passes first.",
    )
    commands = policy.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)

    show = commands.add_parser("show", help="print the effective policy as JSON")
    show.add_argument("policy", nargs="?", metavar="PROFILE|FILE", help="read-only (default), no-secrets, unrestricted, or a file")
    show.add_argument("--read-only", action="store_true", help="show the policy as narrowed by --read-only")
    show.set_defaults(handler=_show)

    check = commands.add_parser("check", help="validate a policy file (exit 0 when it loads, 1 otherwise)")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(handler=_check)

    explain = commands.add_parser(
        "explain",
        help="decide one request or operation and print the rule (exit 0 allow, 3 deny, 4 confirm)",
        description="Decide one request (--method/--url) or one operation (--operation/--scope) under a policy.",
    )
    explain.add_argument("--policy", default=None, help=f"profile or policy file (default: ${POLICY_ENV} or read-only)")
    explain.add_argument("--read-only", action="store_true", help="apply the --read-only narrowing")
    explain.add_argument("--json", action="store_true", help="print one JSON object")
    explain.add_argument("--method", help="HTTP method of the request")
    explain.add_argument("--url", help="full URL of the request")
    explain.add_argument("--arm-endpoint", default=PUBLIC_ARM, help=f"ARM endpoint (default {PUBLIC_ARM})")
    explain.add_argument(
        "--keyvault-endpoint",
        default=PUBLIC_VAULT_TEMPLATE,
        help="Key Vault URL template with {vault} (default https://{vault}.vault.azure.net)",
    )
    explain.add_argument(
        "--logs-endpoint",
        default=PUBLIC_LOGS,
        help=f"Log Analytics query endpoint (default {PUBLIC_LOGS})",
    )
    explain.add_argument("--devops-endpoint", default=PUBLIC_DEVOPS, help=f"Azure DevOps endpoint (default {PUBLIC_DEVOPS})")
    explain.add_argument(
        "--devops-vssps-endpoint",
        default=PUBLIC_DEVOPS_VSSPS,
        help=f"Azure DevOps identity and token endpoint (default {PUBLIC_DEVOPS_VSSPS})",
    )
    explain.add_argument(
        "--devops-organization",
        default=None,
        help="the Azure DevOps organization the server is configured for (default: the one an Azure DevOps --url names)",
    )
    explain.add_argument("--operation", help="an ARM operation, e.g. Microsoft.Storage/storageAccounts/listKeys/action")
    explain.add_argument("--scope", default=None, help="the scope (resource id) for --operation (default /)")
    explain.add_argument("--data-action", action="store_true", help="--operation is a DataAction")
    explain.set_defaults(handler=_explain, explain_parser=explain)

    audit = subparsers.add_parser(
        "audit",
        help="verify the audit trail",
        description="Work with the hash-chained audit log.",
    )
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="check the chain and its signed checkpoints (exit 0 intact, 1 at the first problem)",
        description="Check the audit hash chain across the given files, in order (rotated files PATH.N ... PATH.1 "
        "are included automatically unless listed), its retention seals, and the signed checkpoints in its anchor "
        "(PATH.anchor and PATH.pub next to the last PATH unless --anchor / --public-key say otherwise).",
    )
    verify.add_argument("paths", nargs="+", metavar="PATH")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.add_argument("--anchor", metavar="FILE", help="the checkpoints' anchor file (default PATH.anchor)")
    verify.add_argument("--public-key", metavar="FILE", help="the PEM public key that verifies them (default PATH.pub)")
    verify.add_argument("--chain-only", action="store_true",
                        help="check the hash chain without an anchor (proves nothing against someone who can rewrite it)")
    verify.set_defaults(handler=_verify)


def _load(spec: str | None, read_only: bool = False) -> Any:
    from azure_agent_mcp.policy import PolicyLoadError, load_policy, narrow_read_only

    try:
        policy = load_policy(spec)
    except PolicyLoadError as exc:
        raise CommandError(str(exc)) from None
    return narrow_read_only(policy) if read_only else policy


def _show(args: argparse.Namespace) -> int:
    policy = _load(args.policy, args.read_only)
    print(json.dumps(policy.as_json(), indent=2))
    return 0


def _check(args: argparse.Namespace) -> int:
    policy = _load(args.file)
    patterns = sum(
        len(b.actions) + len(b.not_actions) + len(b.data_actions) + len(b.not_data_actions) for b in policy.blocks
    ) + len(policy.deny) + len(policy.confirm)
    print(
        f"{args.file}: ok ({policy.role_name or 'unnamed'}; {len(policy.blocks)} permission block(s), "
        f"{patterns} pattern(s), AssignableScopes {list(policy.assignable_scopes)})"
    )
    return 0


def _explain(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.explain_parser
    by_request = args.method is not None or args.url is not None
    by_operation = args.operation is not None
    if by_request == by_operation:
        parser.error("give either --method and --url, or --operation (with --scope)")
    if by_request and (args.method is None or args.url is None):
        parser.error("--method and --url go together")
    if by_request and (args.scope is not None or args.data_action):
        parser.error("--scope and --data-action apply to --operation, not to --url")

    from azure_agent_mcp.policy import Endpoints, decide, decide_request

    policy = _load(args.policy or os.environ.get(POLICY_ENV) or None, args.read_only)
    mapped = None
    if by_request:
        try:
            endpoints = Endpoints(args.arm_endpoint, args.keyvault_endpoint, args.logs_endpoint, args.devops_endpoint,
                                  args.devops_vssps_endpoint, args.devops_organization)
            if args.devops_organization is None:
                from dataclasses import replace

                from azure_agent_mcp.policy.operations import devops_organization_in

                named = devops_organization_in(args.url, endpoints)
                if named is not None:
                    endpoints = replace(endpoints, devops_organization=named)
        except ValueError as exc:
            parser.error(str(exc))
        decision, mapped = decide_request(policy, endpoints, args.method, args.url)
    else:
        decision = decide(policy, args.operation, args.scope or "/", data_action=args.data_action)

    data = decision.as_json()
    if mapped is not None:
        data["plane"] = mapped.plane
    if args.json:
        print(json.dumps(data))
    else:
        lines = [
            f"{decision.effect.value}: {decision.operation}" + (" (DataAction)" if decision.data_action else ""),
            f"  scope:  {decision.scope or '-'}",
            f"  rule:   {decision.rule}",
            f"  policy: {decision.policy}",
            f"  reason: {decision.reason}",
        ]
        if decision.hint:
            lines.append(f"  hint:   {decision.hint}")
        print("\n".join(lines))
    return EXIT_FOR_EFFECT[decision.effect.value]


def _verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from azure_agent_mcp.policy import verify_audit

    last = Path(args.paths[-1])
    anchor = Path(args.anchor) if args.anchor else last.with_name(last.name + ".anchor")
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing and (args.chain_only or not anchor.exists()):
        if args.json:
            print(json.dumps({"ok": False, "records": 0, "problem": f"no such audit file: {', '.join(missing)}"}))
            return 1
        raise CommandError(f"no such audit file: {', '.join(missing)}")
    result = verify_audit(args.paths, anchor=args.anchor, public_key=args.public_key, chain_only=args.chain_only)
    if args.json:
        print(json.dumps(result.as_json()))
        return 0 if result.ok else 1
    if result.ok:
        span = f"seq {result.first_seq}..{result.last_seq}" if result.records else "empty"
        lines = [f"audit intact: {result.records} records ({span}) in {len(result.files)} file(s)"]
        if result.retired_segments:
            first, upto = result.retired_seqs or (None, None)
            lines.append(f"  {result.retired_segments} segment(s) retired by retention (seq {first or '?'}..{upto}), "
                         "sealed in the chain")
        if result.anchored:
            state = ("closed cleanly (final checkpoint)" if result.closed
                     else f"open: {result.unanchored} record(s) after the last checkpoint")
            lines.append(f"  anchor: {result.anchor}: {result.checkpoints} signed checkpoint(s), last at seq "
                         f"{result.last_checkpoint_seq}; {state}")
            lines.append(f"  public key: {result.public_key} ({result.key_fingerprint})")
        shown = f"{result.unanchored} record(s) after the last checkpoint"
        lines.extend(f"  note: {note}" for note in result.notes if not note.startswith(shown))
        print("\n".join(lines))
        return 0
    where = str(result.first_bad_file)
    if result.first_bad_line is not None:
        where += f" line {result.first_bad_line}"
    seq = f" (seq {result.bad_seq})" if result.bad_seq is not None else ""
    print(f"audit BROKEN at {where}{seq}: {result.problem}", file=sys.stderr)
    print(f"{result.records} record(s) before it verified", file=sys.stderr)
    if result.key_fingerprint:
        print(f"public key: {result.public_key} ({result.key_fingerprint})", file=sys.stderr)
    return 1
