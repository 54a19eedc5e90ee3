"""What the engine answers: an effect and the decision that carries it, with its reasons.

These types sit below the engine and the errors that carry a decision, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class Effect(str, Enum):
    ALLOW = "allow"
    DENY = "deny"
    CONFIRM = "confirm"


@dataclass(frozen=True)
class Decision:
    effect: Effect
    operation: str
    scope: str
    data_action: bool
    rule: str
    policy: str
    reason: str = ""
    hint: str = ""

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["effect"] = self.effect.value
        return data
