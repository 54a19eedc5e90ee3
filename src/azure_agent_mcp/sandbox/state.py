"""Everything one running sandbox knows: endpoints, signing key, world, switches, faults, log.

Mutated only on the server's event-loop thread (the admin API is how other threads change it),
so the planes need no locks.
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.sandbox.access import Principal
from azure_agent_mcp.sandbox.activitylog import ActivityLog
from azure_agent_mcp.sandbox.clock import SandboxClock
from azure_agent_mcp.sandbox.devops_world import Organization, build_organization
from azure_agent_mcp.sandbox.faults import ClaimsChallenge, Fault
from azure_agent_mcp.sandbox.journal import Journal
from azure_agent_mcp.sandbox.loganalytics import RECORD_LIMIT
from azure_agent_mcp.sandbox.pim_world import PimStore, seed_pim
from azure_agent_mcp.sandbox.rbac import Authorizer
from azure_agent_mcp.sandbox.tokens import TokenService
from azure_agent_mcp.sandbox.world import TENANT_ID, SeedCredentials, World, build_world


class SandboxState:
    def __init__(self, origin: str, token_lifetime: int = 3600, creds: SeedCredentials | None = None) -> None:
        self.origin = origin
        self.tenant_id = TENANT_ID
        self.authority = f"{origin}/{TENANT_ID}"
        self.issuer = f"{origin}/{TENANT_ID}/v2.0"
        self.token_lifetime = int(token_lifetime)
        self.creds = creds or SeedCredentials.generate()
        self.tokens = TokenService(self.issuer)
        self.journal = Journal()
        # Real time plus an offset the admin API advances: PIM schedules, RBAC expiry, the activity log
        # and every response's Date header read it; tokens stay on real time (see clock.py).
        self.clock = SandboxClock()
        # What ARM changed, as Azure's activity log shows it (fed by the ARM plane's listener).
        self.activity = ActivityLog(self.tenant_id, clock=self.clock.now)
        self.world: World
        self.devops: Organization  # the Azure DevOps organization (devops_world)
        self.authorizer: Authorizer
        self.pim: PimStore
        self.faults: list[Fault] = []
        self.challenges: list[ClaimsChallenge] = []
        self.agent_rule = True
        self.wrong_identity = False
        self.sidecar_drops_agent_user = False
        self.obo_answers_for_another_user = False
        self.logs_record_limit = RECORD_LIMIT
        self.sidecar_cache: dict[tuple[str, ...], tuple[str, int]] = {}
        self.reset()

    def reset(self) -> None:
        """Seed world, PIM, the clock, switches, faults, challenges, logs and the sidecar's cache restored;
        certificates kept."""
        certificates = {}
        if getattr(self, "world", None) is not None:
            certificates = {sp.client_id: list(sp.certificates) for sp in self.world.service_principals}
        self.world = build_world(self.origin, self.creds)
        for sp in self.world.service_principals:
            sp.certificates = certificates.get(sp.client_id, [])
        self.clock.reset()
        self.authorizer = Authorizer(self.world.role_assignments, clock=self.clock.now)
        self.pim = seed_pim()
        self.devops = build_organization(self.creds.key_salt)
        self.faults = []
        self.challenges = []
        self.agent_rule = True
        self.wrong_identity = False
        self.sidecar_drops_agent_user = False
        self.obo_answers_for_another_user = False
        self.logs_record_limit = RECORD_LIMIT
        self.sidecar_cache.clear()
        self.journal.reset()
        self.activity.clear()

    def set_wrong_identity(self, enabled: bool) -> None:
        """Agent-identity requests answered with the shared project identity's tokens (tests identity pinning)."""
        self.wrong_identity = enabled
        self.sidecar_cache.clear()  # a sidecar would not notice; the switch must bite at once in tests

    def set_sidecar_drops_agent_user(self, enabled: bool) -> None:
        """A misbehaving sidecar: asked for the agent user, it answers as the agent identity (pinning tests)."""
        self.sidecar_drops_agent_user = enabled
        self.sidecar_cache.clear()

    def take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.remaining > 0 and fault.pattern.search(path):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.faults.remove(fault)
                return fault
        return None

    def claims_challenge_for(self, path: str, principal: Principal) -> ClaimsChallenge | None:
        for challenge in self.challenges:
            if challenge.pattern.search(path) and not challenge.satisfied_by(principal.claims):
                return challenge
        return None

    def manifest_users(self) -> list[dict[str, Any]]:
        return [{"name": u.name, "upn": u.upn, "object_id": u.object_id, "password": u.password, "roles": u.roles}
                for u in self.world.users]
