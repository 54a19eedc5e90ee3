"""``decide()``: may the agent perform operation O at scope S under this policy?

Precedence, strongest first:

1. ``Deny`` (the secret-bearing catalog in the built-in profiles) refuses, whatever else says;
2. a scope outside ``AssignableScopes`` refuses;
3. ``Actions`` minus ``NotActions`` (``DataActions`` minus ``NotDataActions`` for data actions),
   unioned across permission blocks, must allow the operation, else it is refused;
4. the ``--read-only`` narrowing refuses anything but reads and metadata DataActions;
5. ``Confirm`` turns an allowed operation into "ask the user first";
6. otherwise allowed.

The function is pure (the answer depends only on the policy and the arguments) and is called on
every outgoing request, so each policy compiles its pattern lists once and memoises decisions.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from azure_agent_mcp.policy.catalog import why_secret
from azure_agent_mcp.policy.effects import Decision, Effect
from azure_agent_mcp.policy.model import Policy
from azure_agent_mcp.policy.overlap import SearchBudgetExceeded, witness
from azure_agent_mcp.policy.patterns import PatternSet
from azure_agent_mcp.policy.profiles import METADATA_DATA_ACTIONS, READ_ACTIONS, READ_ONLY
from azure_agent_mcp.policy.scopes import ROOT, ScopeSet

CACHE_LIMIT = 16_384
_RANK = {Effect.DENY: 0, Effect.CONFIRM: 1, Effect.ALLOW: 2}
VAULT_PSEUDO_SCOPE_PREFIX = "/providers/microsoft.keyvault/vaults/"


@dataclass(frozen=True)
class _Block:
    actions: PatternSet
    not_actions: PatternSet
    data_actions: PatternSet
    not_data_actions: PatternSet


class _Compiled:
    __slots__ = ("deny", "confirm", "blocks", "scopes", "narrow_actions", "narrow_data", "cache", "visibility")

    def __init__(self, policy: Policy) -> None:
        self.deny = PatternSet(policy.deny)
        self.confirm = PatternSet(policy.confirm)
        self.blocks = tuple(
            _Block(
                PatternSet(b.actions),
                PatternSet(b.not_actions),
                PatternSet(b.data_actions),
                PatternSet(b.not_data_actions),
            )
            for b in policy.blocks
        )
        self.scopes = ScopeSet(policy.assignable_scopes)
        self.narrow_actions = PatternSet(READ_ACTIONS)
        self.narrow_data = PatternSet(METADATA_DATA_ACTIONS)
        self.cache: dict[tuple[str, str, bool], Decision] = {}
        self.visibility: dict[tuple[tuple[tuple[str, bool], ...], str], Decision] = {}


_compile_lock = threading.Lock()


def _compiled(policy: Policy) -> _Compiled:
    compiled = policy._compiled
    if compiled is None:
        with _compile_lock:
            compiled = policy._compiled
            if compiled is None:
                compiled = _Compiled(policy)
                object.__setattr__(policy, "_compiled", compiled)
    return compiled


def decide(policy: Policy, operation: str, scope: str, data_action: bool = False) -> Decision:
    """The decision for one operation at one scope (memoised per policy)."""
    compiled = policy._compiled or _compiled(policy)
    key = (operation, scope, data_action)
    cached = compiled.cache.get(key)
    if cached is not None:
        return cached
    decision = _decide(policy, compiled, operation, scope, bool(data_action))
    if len(compiled.cache) >= CACHE_LIMIT:
        compiled.cache.clear()
    compiled.cache[key] = decision
    return decision


def _decide(policy: Policy, c: _Compiled, operation: str, scope: str, data_action: bool) -> Decision:
    op = operation.lower()
    kind = "DataActions" if data_action else "Actions"

    def make(effect: Effect, rule: str, reason: str, hint: str = "") -> Decision:
        return Decision(effect, operation, scope, data_action, rule, policy.name, reason, hint)

    denied_by = c.deny.first_match(op)
    if denied_by is not None:
        note = why_secret(denied_by)
        rule = f"Deny: {denied_by}" + (" (secret-bearing catalog)" if note else "")
        reason = f"{operation} is denied by policy '{policy.name}' (Deny pattern '{denied_by}')."
        if note:
            reason = f"{operation} is secret-bearing ({note}) and policy '{policy.name}' denies it."
        return make(Effect.DENY, rule, reason, _deny_hint(policy, denied_by, bool(note)))

    if not c.scopes.covers(scope):
        listed = ", ".join(policy.assignable_scopes)
        return make(
            Effect.DENY,
            f"outside AssignableScopes [{listed}]",
            f"Scope {scope or ROOT} is outside policy '{policy.name}''s AssignableScopes [{listed}].",
            _scope_hint(policy, scope),
        )

    allowed_by: str | None = None
    excluded_by: str | None = None
    for block in c.blocks:
        include, exclude = (
            (block.data_actions, block.not_data_actions) if data_action else (block.actions, block.not_actions)
        )
        granted = include.first_match(op)
        if granted is None:
            continue
        removed = exclude.first_match(op)
        if removed is None:
            allowed_by = granted
            break
        excluded_by = excluded_by or removed
    if allowed_by is None:
        if excluded_by is not None:
            not_kind = "NotDataActions" if data_action else "NotActions"
            return make(
                Effect.DENY,
                f"{not_kind}: {excluded_by}",
                f"{operation} is excluded by {not_kind} pattern '{excluded_by}' of policy '{policy.name}'.",
                _not_actions_hint(policy, not_kind, excluded_by),
            )
        return make(
            Effect.DENY,
            f"no {kind} pattern matches",
            f"Policy '{policy.name}' has no {kind} pattern that grants {operation}.",
            _grant_hint(policy, operation, data_action),
        )

    if policy.read_only:
        narrow = c.narrow_data if data_action else c.narrow_actions
        if narrow.first_match(op) is None:
            return make(
                Effect.DENY,
                "read-only narrowing (--read-only): only */read Actions and metadata DataActions",
                f"{operation} is not a read, and the server runs with --read-only.",
                f"Restart without --read-only (policy '{policy.name}' itself would allow {operation}).",
            )

    confirm_by = c.confirm.first_match(op)
    if confirm_by is not None:
        note = why_secret(confirm_by)
        rule = f"Confirm: {confirm_by}" + (" (secret-bearing catalog)" if note else "")
        reason = f"Policy '{policy.name}' requires the user's confirmation for {operation} (Confirm pattern '{confirm_by}')."
        if note:
            reason += f" It is secret-bearing: {note}"
        hint = "Approve it when the MCP client asks (a client without elicitation cannot confirm, so it is denied)"
        hint += "." if policy.builtin else f", or remove '{confirm_by}' from Confirm in {policy.source}."
        return make(Effect.CONFIRM, rule, reason, hint)

    return make(
        Effect.ALLOW,
        f"{kind}: {allowed_by}",
        f"{operation} is allowed by {kind} pattern '{allowed_by}' of policy '{policy.name}'.",
    )


def _deny_hint(policy: Policy, pattern: str, secret: bool) -> str:
    if policy.builtin or policy.read_only:
        if secret:
            prefix = "Restart without --read-only and use" if policy.read_only else "Use"
            return (
                f"{prefix} --policy unrestricted (secret-bearing operations then need the user's confirmation), "
                f"or a policy file whose Deny list leaves out '{pattern}'."
            )
        return f"Use a policy file whose Deny list leaves out '{pattern}'."
    return f"Remove '{pattern}' from Deny in {policy.source}."


def _scope_hint(policy: Policy, scope: str) -> str:
    if scope.lower().startswith(VAULT_PSEUDO_SCOPE_PREFIX):
        vault = "/".join(scope.split("/")[:5])
        return (
            f"Key Vault data-plane requests are scoped to {vault}/...; add '{vault}' (or '/') to AssignableScopes "
            f"in {policy.source}."
        )
    return f"Add '{scope}' (or a scope above it) to AssignableScopes in {policy.source}."


def _not_actions_hint(policy: Policy, not_kind: str, pattern: str) -> str:
    if policy.builtin:
        return f"Use a policy file without NotActions pattern '{pattern}'."
    return f"Remove '{pattern}' from {not_kind} in {policy.source}."


def _grant_hint(policy: Policy, operation: str, data_action: bool) -> str:
    kind = "DataActions" if data_action else "Actions"
    if policy.name == READ_ONLY and policy.builtin:
        return (
            "Use --policy no-secrets to allow writes and actions (deletes then need the user's confirmation; "
            "secret-bearing operations stay denied)."
        )
    if policy.builtin:
        return f"Use a policy file whose {kind} include '{operation}'."
    return f"Add '{operation}' (or a pattern covering it) to {kind} in {policy.source}."


# -- tool visibility -----------------------------------------------------------------------------


def tool_visibility(
    policy: Policy, operations: Sequence[tuple[str, bool]], scope: str = ROOT
) -> Decision:
    """The best decision any call of a tool could get: DENY means the tool can never run.

    ``operations`` are the tool's declared (operation, data_action) pairs, alternatives of which a
    call uses some; an operation may be a pattern (``*/delete``) standing for any operation it
    matches. ``scope`` is where the tool acts; an AssignableScopes entry below it counts (a tool
    listing resources at ``/`` can still act inside ``/subscriptions/abc``).
    """
    compiled = policy._compiled or _compiled(policy)
    key = (tuple((op, bool(da)) for op, da in operations), scope)
    cached = compiled.visibility.get(key)
    if cached is not None:
        return cached
    best: Decision | None = None
    for operation, data_action in key[0]:
        decision = _best_for(policy, compiled, operation, data_action, scope)
        if best is None or _RANK[decision.effect] > _RANK[best.effect]:
            best = decision
        if best.effect is Effect.ALLOW:
            break
    if best is None:
        best = Decision(Effect.ALLOW, "", scope, False, "no Azure operations", policy.name, "The tool sends nothing to Azure.")
    compiled.visibility[key] = best
    return best


def _best_for(policy: Policy, c: _Compiled, operation: str, data_action: bool, scope: str) -> Decision:
    target = scope
    if not c.scopes.covers(scope):
        beneath = c.scopes.beneath(scope)
        if not beneath:
            return decide(policy, operation, scope, data_action)
        target = beneath[0]
    if "*" not in operation:
        return decide(policy, operation, target, data_action)
    for allow_confirm in (False, True):
        try:
            example = _witness(policy, operation, data_action, allow_confirm)
        except SearchBudgetExceeded:
            return Decision(
                Effect.ALLOW,
                operation,
                target,
                data_action,
                f"undetermined for {operation} (search budget exhausted); every request is still checked",
                policy.name,
                f"Could not prove that policy '{policy.name}' never allows '{operation}', so the tool stays visible.",
            )
        if example is not None:
            decision = decide(policy, example, target, data_action)
            return replace(
                decision,
                operation=operation,
                reason=f"Some operations matching '{operation}' can be {decision.effect.value}ed "
                f"under policy '{policy.name}' ({decision.rule}).",
            )
    kind = "DataActions" if data_action else "Actions"
    return Decision(
        Effect.DENY,
        operation,
        target,
        data_action,
        f"no operation matching {operation} can be allowed",
        policy.name,
        f"Policy '{policy.name}' allows no operation matching '{operation}' ({kind}, NotActions and Deny together).",
        _grant_hint(policy, operation, data_action),
    )


def _witness(policy: Policy, operation: str, data_action: bool, allow_confirm: bool) -> str | None:
    common = list(policy.deny) + ([] if allow_confirm else list(policy.confirm))
    narrowing: tuple[str | None, ...] = (None,)
    if policy.read_only:
        narrowing = METADATA_DATA_ACTIONS if data_action else READ_ACTIONS
    for block in policy.blocks:
        grants = block.data_actions if data_action else block.actions
        removed = block.not_data_actions if data_action else block.not_actions
        for grant in grants:
            for narrow in narrowing:
                include = [operation, grant] + ([narrow] if narrow else [])
                found = witness(include, common + list(removed))
                if found is not None:
                    return found
    return None

