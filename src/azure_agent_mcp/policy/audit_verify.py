"""``audit verify``: the chain, its seals, and its signed checkpoints, checked together.

The chain alone catches edits by someone who cannot recompute hashes. The anchor catches the
rest: a rewritten record re-chained, a truncated tail, an emptied or deleted file, head records
removed, segments renamed to look rotated, records appended after a clean close, and a
checkpoint whose signature does not verify. The first problem wins and is located (file, line,
seq) with what was found and what was expected.

What cannot be caught, by design, is stated in the README: records written after the last
checkpoint of a log whose writer is still running (or died) are covered only by the chain until
the next checkpoint, and an attacker who holds the signing key, or can rewrite the anchor, can
forge everything.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from azure_agent_mcp.policy.audit_checkpoints import AnchorFile, check_entry, entry_hash, read_anchor, read_file
from azure_agent_mcp.policy.audit_keys import PublicKey, load_public_key
from azure_agent_mcp.policy.audit_records import GENESIS, record_hash
from azure_agent_mcp.policy.audit_segments import audit_files, companion

_LOCK_WAIT = 5.0  # seconds verify waits for the writers' mutex before reading without it


@dataclass(frozen=True)
class VerifyResult:
    """The verdict. ``records`` counts the records verified before the first problem."""

    ok: bool
    records: int
    files: tuple[str, ...] = ()
    first_seq: int | None = None
    last_seq: int | None = None
    anchored: bool = False  # checked against an anchor of signed checkpoints
    first_bad_file: str | None = None
    first_bad_line: int | None = None
    bad_seq: int | None = None
    problem: str | None = None
    genesis: bool = False  # the surviving chain starts at seq 1
    retired_segments: int = 0
    retired_seqs: tuple[int | None, int] | None = None  # (first, last) seq dropped by retention
    torn_tail_bytes: int | None = None
    repairs: int = 0
    anchor: str | None = None
    public_key: str | None = None
    key_fingerprint: str | None = None
    checkpoints: int = 0
    last_checkpoint_seq: int | None = None
    closed: bool = False  # the last checkpoint is final: the log was closed cleanly
    unanchored: int = 0  # records after the last checkpoint
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = list(self.files)
        data["notes"] = list(self.notes)
        data["retired_seqs"] = list(self.retired_seqs) if self.retired_seqs else None
        return data


class _Broken(Exception):
    """The first problem: where, and what."""

    def __init__(self, file: str | Path | None, line: int | None, seq: int | None, problem: str, *,
                 torn: int | None = None) -> None:
        super().__init__(problem)
        self.file = str(file) if file is not None else None
        self.line, self.seq, self.problem, self.torn = line, seq, problem, torn


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    """Each path with its rotated predecessors (oldest first), unless the caller listed them."""
    given = [Path(p) for p in paths]
    named = {p.resolve() for p in given if p.exists()}
    files: list[Path] = []
    for path in given:
        siblings = audit_files(path)[:-1]
        if not any(s.resolve() in named for s in siblings):
            files.extend(siblings)
        files.append(path)
    return files


def _snapshot(files: list[Path], anchor: Path, lock: Path) -> tuple[dict[Path, bytes | OSError], bytes | OSError]:
    """Every file's bytes, read under the writers' mutex when it can be had (a consistent view)."""
    from azure_agent_mcp.policy.audit_lock import read_only_lock, unlock_fd

    fd = None
    if lock.exists():
        deadline = time.monotonic() + _LOCK_WAIT
        while fd is None and time.monotonic() < deadline:
            fd = read_only_lock(lock)
            if fd is None:
                time.sleep(0.05)
    try:
        data: dict[Path, bytes | OSError] = {}
        for file in files:
            try:
                data[file] = read_file(file)
            except OSError as exc:
                data[file] = exc
        try:
            anchored: bytes | OSError = read_file(anchor)
        except OSError as exc:
            anchored = exc
        return data, anchored
    finally:
        unlock_fd(fd)


def _stray_segments(log_path: Path, files: list[Path]) -> list[str]:
    """Rotated segments past a hole in the numbering (``.3`` with ``.2`` gone): what a verify would miss."""
    listed = {f.name for f in files}
    prefix = log_path.name + "."
    try:
        names = [n for n in os.listdir(log_path.parent or ".") if n.startswith(prefix)]
    except OSError:
        return []
    return sorted(n for n in names if n[len(prefix):].isdigit() and n not in listed)


@dataclass
class _Chain:
    """What the scan of the records learned."""

    count: int = 0
    first: tuple[str, int, dict[str, Any]] | None = None  # file, line, record
    last: dict[str, Any] | None = None
    by_seq: dict[int, tuple[str, str, int]] = field(default_factory=dict)  # seq -> (hash, file, line)
    seals: list[dict[str, Any]] = field(default_factory=list)
    repairs: int = 0
    repaired: list[str] = field(default_factory=list)  # what each repair record says was dropped
    lines_in_last_file: int = 0
    missing_files: list[str] = field(default_factory=list)


def _gap_problem(record: dict[str, Any], where: str) -> str:
    reason = record.get("reason")
    expected, found = record.get("expected_seq"), record.get("found_seq")
    detail = record.get("detail") or f"the writer found a gap ({reason})"
    if reason == "foreign":
        span = f"records seq {(expected or 0) + 1}..{found}"
        return f"{detail}: {span} are not the audit writer's (gap record at {where})"
    if reason == "behind_anchor":
        return (f"{detail}: the log ended at seq {found if found is not None else 0} but the signed checkpoint "
                f"attested seq {expected} (gap record at {where}); records up to seq {expected} are missing")
    first_missing = (found or 0) + 1
    return (f"{detail}: records seq {first_missing}..{expected} are missing; the writer noticed and continued "
            f"the chain from seq {expected} (gap record at {where})")


def _scan(files: list[Path], data: dict[Path, bytes | OSError], chain: _Chain) -> None:
    previous: dict[str, Any] | None = None
    previous_at = ""
    for index, file in enumerate(files):
        raw = data[file]
        is_last = index == len(files) - 1
        if isinstance(raw, OSError):
            if isinstance(raw, FileNotFoundError) and is_last:
                chain.missing_files.append(str(file))
                continue
            raise _Broken(file, 0, None, f"cannot read the file: {raw.strerror or raw}")
        torn = 0
        if raw and not raw.endswith(b"\n"):
            torn = len(raw) - (raw.rfind(b"\n") + 1)
        lines = raw[: len(raw) - torn].split(b"\n")[:-1] if raw else []
        for number, line in enumerate(lines, start=1):
            record = _parse(line)
            if record is None:
                rest = lines[number - 1 :]
                if is_last and all(_parse(other) is None for other in rest):
                    size = sum(len(other) + 1 for other in rest) + torn
                    raise _Broken(file, number, None,
                                  f"not a JSON record: a torn tail of {size} bytes after {chain.count} good records "
                                  "(the writer truncates it and appends a repair record on its next start)", torn=size)
                raise _Broken(file, number, None, "not a JSON record")
            _check_record(record, file, number, previous, previous_at, chain)
            previous = record
            previous_at = f"{file} line {number}"
        if torn:
            raise _Broken(file, len(lines) + 1, None,
                          f"the last line is incomplete: a torn tail of {torn} bytes after {chain.count} good "
                          "records (truncated in the middle of a record; the writer truncates it and appends a "
                          "repair record on its next start)", torn=torn)
        if is_last:
            chain.lines_in_last_file = len(lines)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _check_record(record: dict[str, Any], file: Path, number: int, previous: dict[str, Any] | None,
                  previous_at: str, chain: _Chain) -> None:
    seq, stored = record.get("seq"), record.get("hash")
    where = f"{file} line {number}"
    if not isinstance(seq, int) or not isinstance(stored, str) or "prev_hash" not in record:
        raise _Broken(file, number, seq if isinstance(seq, int) else None, "missing seq, prev_hash or hash")
    if record_hash(record) != stored:
        raise _Broken(file, number, seq, "the record's content does not match its hash (altered)")
    if record.get("kind") == "gap":
        raise _Broken(file, number, seq, _gap_problem(record, where))
    if previous is None:
        if record["prev_hash"] == GENESIS and seq != 1:
            raise _Broken(file, number, seq, f"the chain starts at seq {seq} instead of 1")
        chain.first = (str(file), number, record)
    else:
        if record["prev_hash"] != previous["hash"]:
            raise _Broken(file, number, seq,
                          f"prev_hash does not match the hash of the record before it ({previous_at}, seq "
                          f"{previous['seq']}): a record was deleted, inserted or reordered, or a file truncated")
        if seq != previous["seq"] + 1:
            raise _Broken(file, number, seq, f"seq {seq} follows seq {previous['seq']} ({previous_at})")
    if record.get("kind") == "seal":
        chain.seals.append(record)
    elif record.get("kind") == "repair":
        chain.repairs += 1
        dropped = record.get("dropped_bytes")
        chain.repaired.append(f"seq {seq}: {dropped if isinstance(dropped, int) else '?'} bytes of an incomplete "
                              f"record dropped ({file} line {number})")
    chain.by_seq[seq] = (stored, str(file), number)
    chain.last = record
    chain.count += 1


@dataclass
class _Retention:
    genesis: bool = False
    segments: int = 0
    seqs: tuple[int | None, int] | None = None


def _check_start(chain: _Chain) -> _Retention:
    """A chain that does not start at seq 1 needs a seal that covers what came before it."""
    if chain.first is None:
        return _Retention()
    file, number, first = chain.first
    if first["prev_hash"] == GENESIS:
        return _Retention(genesis=True)
    for seal in chain.seals:
        if seal.get("last_seq") == first["seq"] - 1 and seal.get("last_hash") == first["prev_hash"]:
            segments = max(int(s.get("retired_segments") or 1) for s in chain.seals)
            return _Retention(False, segments, (seal.get("retired_from_seq"), first["seq"] - 1))
    raise _Broken(file, number, first["seq"],
                  f"the chain starts at seq {first['seq']} without its predecessor: records were deleted from the head "
                  "or the rotated files are missing (pass them too), and no retention seal in the log covers seq "
                  f"{first['seq'] - 1}")


@dataclass
class _Anchored:
    anchor: str
    public_key: str
    fingerprint: str
    checkpoints: int = 0
    last_seq: int | None = None
    closed: bool = False
    notes: list[str] = field(default_factory=list)


def _check_anchor(anchor_path: Path, raw: bytes, public: PublicKey, public_path: Path, chain: _Chain,
                  retention: _Retention, log_path: Path) -> _Anchored:
    result = _Anchored(str(anchor_path), str(public_path), public.fingerprint)
    parsed: AnchorFile = read_anchor(raw)
    first_seq = chain.first[2]["seq"] if chain.first else None
    last_seq = chain.last["seq"] if chain.last else 0
    expected_n, expected_prev = 0, GENESIS
    highest: tuple[int, int] | None = None  # (seq, anchor line)
    closed: tuple[int, str, int] | None = None
    matched: int | None = None  # the highest seq a checkpoint confirmed
    entries = []
    for line in parsed.lines:
        entry = line.entry
        why = check_entry(entry, public) if entry is not None else "not JSON"
        if why is not None:
            raise _Broken(anchor_path, line.number, entry.get("seq") if isinstance(entry, dict) else None,
                          f"anchor line {line.number}: {why}")
        assert entry is not None
        if entry["n"] != expected_n or entry["prev"] != expected_prev:
            what = ("the anchor starts at entry {n}: earlier entries were removed" if line.number == 1
                    else "does not follow the entry before it: anchor entries were removed, inserted or reordered")
            raise _Broken(anchor_path, line.number, entry["seq"], f"anchor line {line.number} (entry {entry['n']}) "
                          + what.format(n=entry["n"]))
        if entry.get("anchor_gap"):
            raise _Broken(anchor_path, line.number, entry["seq"],
                          f"anchor line {line.number}: the writer found the anchor {entry['anchor_gap']} while it ran: "
                          "checkpoints before it may be lost")
        expected_n, expected_prev = entry["n"] + 1, entry_hash(entry)
        entries.append((line.number, entry))
    if parsed.torn_bytes:
        raise _Broken(anchor_path, len(parsed.lines) + 1, None,
                      f"the anchor's last line is incomplete ({parsed.torn_bytes} bytes): a writer died mid-checkpoint, "
                      "or the anchor was truncated")
    if entries and entries[0][1].get("adopted"):
        result.notes.append(f"the anchor began at seq {entries[0][1]['seq']}: records up to it predate the anchor "
                            "(their chain is checked, not their signatures)")
    missing = f"the log file {log_path} does not exist" if chain.missing_files else f"the log ends at seq {last_seq}"
    for number, entry in entries:
        seq, digest = entry["seq"], entry["hash"]
        if closed is not None:
            if entry["event"] != "open" or (seq, digest) != closed[:2]:
                raise _Broken(anchor_path, number, seq,
                              f"the log was closed at seq {closed[0]} (final checkpoint, anchor line {closed[2]}), but "
                              f"the next writer found seq {seq} (anchor line {number}): records were changed, added or "
                              "removed while no writer ran")
            closed = None
        if highest is not None and seq < highest[0]:
            raise _Broken(anchor_path, number, seq,
                          f"anchor line {number} attests seq {seq} after anchor line {highest[1]} attested seq "
                          f"{highest[0]}: records {seq + 1}..{highest[0]} vanished in between")
        if seq > 0:
            if seq in chain.by_seq:
                stored, file, line_no = chain.by_seq[seq]
                if stored != digest:
                    after = matched if matched is not None else (first_seq - 1 if first_seq else 0)
                    raise _Broken(file, line_no, seq,
                                  f"the record at seq {seq} is not the one the signed checkpoint at anchor line {number} "
                                  f"attests: a record in seq {after + 1}..{seq} was rewritten and the chain recomputed "
                                  f"(seq {after} is the last one a checkpoint confirms)")
                matched = seq
            elif seq > last_seq:
                raise _Broken(log_path, None if chain.missing_files else chain.lines_in_last_file + 1, last_seq + 1,
                              f"{missing}, but the signed checkpoint at anchor line {number} attests seq {seq}: records "
                              f"{last_seq + 1}..{seq} were removed (tail truncated, file emptied or deleted)")
            elif first_seq is not None and seq < first_seq:
                if retention.seqs is None or seq > retention.seqs[1]:
                    raise _Broken(anchor_path, number, seq,
                                  f"anchor line {number} attests seq {seq}, which is not in the log (it starts at seq "
                                  f"{first_seq}) and no retention seal covers it: head records were removed")
        elif digest != GENESIS:
            raise _Broken(anchor_path, number, seq, f"anchor line {number} attests seq 0 with a hash that is not genesis")
        if highest is None or seq >= highest[0]:
            highest = (seq, number)
        if entry["event"] == "final":
            closed = (seq, digest, number)
        result.checkpoints += 1
    if not entries:
        result.notes.append("the anchor holds no checkpoints yet")
        return result
    last_number, last_entry = entries[-1]
    result.last_seq = last_entry["seq"]
    result.closed = last_entry["event"] == "final"
    if result.closed and last_seq > last_entry["seq"]:
        file, line_no = chain.by_seq[last_entry["seq"] + 1][1:]
        raise _Broken(file, line_no, last_entry["seq"] + 1,
                      f"records seq {last_entry['seq'] + 1}..{last_seq} were appended after the log was closed (final "
                      f"checkpoint at seq {last_entry['seq']}, anchor line {last_number}): no audit writer wrote them "
                      "(forged append?)")
    return result


def verify_audit(
    paths: Iterable[str | Path],
    *,
    anchor: str | Path | None = None,
    public_key: str | Path | None = None,
    chain_only: bool = False,
) -> VerifyResult:
    """Check the chain across ``paths`` (rotated siblings added), its seals, and its anchor.

    The anchor and public key default to the companions of the last path (``PATH.anchor``,
    ``PATH.pub``). Without an anchor the result is not ok; ``chain_only=True`` checks the chain
    and its seals alone (which proves nothing against someone who can recompute it).
    """
    given = [Path(p) for p in paths]
    if not given:
        raise ValueError("no audit file given")
    log_path = given[-1]
    files = _expand(given)
    anchor_path = Path(anchor) if anchor is not None else companion(log_path, ".anchor")
    public_path = Path(public_key) if public_key is not None else companion(log_path, ".pub")
    data, anchor_raw = _snapshot(files, anchor_path, companion(log_path, ".lock"))
    stray = _stray_segments(log_path, files)
    if stray:
        notes_first = [f"{', '.join(stray)} exist(s) beyond a missing segment and were not checked"]
    else:
        notes_first = []
    shown = tuple(str(f) for f in files if not isinstance(data[f], FileNotFoundError))
    chain = _Chain()
    retention = _Retention()
    anchored: _Anchored | None = None
    notes: list[str] = list(notes_first)
    try:
        _scan(files, data, chain)
        retention = _check_start(chain)
        if chain.missing_files and chain.count == 0 and isinstance(anchor_raw, FileNotFoundError):
            raise _Broken(log_path, None, None, f"no such audit file: {log_path} (and no anchor at {anchor_path})")
        if chain_only:
            notes.append("checked without the anchor (--chain-only): the chain only")
        elif isinstance(anchor_raw, OSError):
            cause = "does not exist" if isinstance(anchor_raw, FileNotFoundError) else (anchor_raw.strerror or anchor_raw)
            raise _Broken(anchor_path, None, None,
                          f"no anchor: {anchor_path} {cause}. The chain is intact as far as it goes, but nothing "
                          "proves it was not recomputed, truncated or replaced (pass --anchor, or --chain-only)")
        else:
            try:
                public = load_public_key(public_path)
            except (OSError, ValueError) as exc:
                why = "does not exist" if isinstance(exc, FileNotFoundError) else str(exc)
                raise _Broken(public_path, None, None,
                              f"no public key to verify the anchor: {public_path} {why} (pass --public-key)") from None
            anchored = _check_anchor(anchor_path, anchor_raw, public, public_path, chain, retention, log_path)
            notes.extend(anchored.notes)
        if chain.missing_files:
            notes.append(f"{chain.missing_files[0]} does not exist (its rotated segments were checked)")
    except _Broken as broken:
        if stray:
            broken.problem += f" ({notes_first[0]})"
        return VerifyResult(
            False, chain.count, shown, chain.first[2]["seq"] if chain.first else None,
            chain.last["seq"] if chain.last else None, anchored is not None, broken.file, broken.line, broken.seq,
            broken.problem, retention.genesis, retention.segments, retention.seqs,
            broken.torn, chain.repairs, str(anchor_path), str(public_path),
            anchored.fingerprint if anchored else _fingerprint_or_none(public_path),
            notes=tuple(notes),
        )
    last = chain.last["seq"] if chain.last else None
    unanchored = 0
    if anchored is not None and not anchored.closed and last is not None:
        unanchored = last - (anchored.last_seq or 0)
        if unanchored > 0:
            notes.append(f"{unanchored} record(s) after the last checkpoint: a writer is running (or stopped without "
                         "closing); they are covered by the chain only, until the next checkpoint")
    if chain.repairs:
        notes.append(f"{chain.repairs} torn tail(s) repaired by the writer (repair records): "
                     + "; ".join(chain.repaired))
    return VerifyResult(
        True, chain.count, shown, chain.first[2]["seq"] if chain.first else None, last, anchored is not None,
        genesis=retention.genesis, retired_segments=retention.segments, retired_seqs=retention.seqs,
        repairs=chain.repairs, anchor=str(anchor_path) if anchored else None,
        public_key=str(public_path) if anchored else None, key_fingerprint=anchored.fingerprint if anchored else None,
        checkpoints=anchored.checkpoints if anchored else 0, last_checkpoint_seq=anchored.last_seq if anchored else None,
        closed=anchored.closed if anchored else False, unanchored=max(unanchored, 0), notes=tuple(notes),
    )


def _fingerprint_or_none(path: Path) -> str | None:
    try:
        return load_public_key(path).fingerprint
    except (OSError, ValueError):
        return None


__all__ = ["VerifyResult", "verify_audit"]
