"""``--policy``: a profile name or the path of a policy file, resolved to a Policy or a clear error."""

from __future__ import annotations

from pathlib import Path

from azure_agent_mcp.policy.errors import PolicyLoadError
from azure_agent_mcp.policy.model import Policy, parse_policy_text
from azure_agent_mcp.policy.profiles import DEFAULT_PROFILE, PROFILE_NAMES, builtin_profile

MAX_POLICY_BYTES = 1024 * 1024


def load_policy(spec: str | None) -> Policy:
    """The policy named by ``spec``: None or "" -> the default profile (read-only)."""
    if spec is None or spec.strip() == "":
        return builtin_profile(DEFAULT_PROFILE)
    if spec.lower() in PROFILE_NAMES:
        return builtin_profile(spec.lower())
    path = Path(spec).expanduser()
    if not path.exists():
        raise PolicyLoadError(
            f"'{spec}' is neither a built-in profile ({', '.join(PROFILE_NAMES)}) nor an existing policy file",
            source=spec,
        )
    if not path.is_file():
        raise PolicyLoadError(f"policy file {spec}: not a regular file", source=spec)
    try:
        size = path.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise PolicyLoadError(
                f"policy file {spec}: {size} bytes is larger than the {MAX_POLICY_BYTES} bytes a policy may have",
                source=spec,
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyLoadError(f"policy file {spec}: cannot read it: {exc.strerror or exc}", source=spec) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyLoadError(f"policy file {spec}: not UTF-8 text (byte {exc.start})", source=spec) from None
    return parse_policy_text(text, source=spec)
