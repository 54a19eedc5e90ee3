"""Git's object model for the sandbox's repositories: blobs, trees and commits with git's own SHA-1 ids.

Ids are computed exactly as git computes them (``sha1("<type> <size>\\0" + body)``), so a commit
id the sandbox returns looks and behaves like a real one: the same tree gives the same id, and a
changed file changes every id above it. A push is staged in a ``Staging`` overlay and only merged
into the store when the whole push is valid, which is how a failed push leaves nothing behind.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

ZERO_ID = "0" * 40
BLOB_MODE = "100644"
TREE_MODE = "40000"


@dataclass(frozen=True)
class Signature:
    name: str
    email: str
    epoch: int  # seconds, UTC


@dataclass(frozen=True)
class Commit:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author: Signature
    committer: Signature
    comment: str
    files: dict[str, str]  # "/path" -> blob sha: the commit's whole tree, flattened


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    name: str
    sha: str

    @property
    def is_tree(self) -> bool:
        return self.mode == TREE_MODE


def _object_id(kind: str, body: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body).hexdigest()  # noqa: S324 - git's object id


@dataclass
class ObjectStore:
    blobs: dict[str, bytes] = field(default_factory=dict)
    trees: dict[str, tuple[TreeEntry, ...]] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def merge(self, other: ObjectStore) -> None:
        self.blobs.update(other.blobs)
        self.trees.update(other.trees)
        self.commits.update(other.commits)


class Staging:
    """Objects a push is writing, readable together with the store, merged only on success."""

    def __init__(self, base: ObjectStore) -> None:
        self.base = base
        self.new = ObjectStore()

    def blob(self, content: bytes) -> str:
        sha = _object_id("blob", content)
        if sha not in self.base.blobs:
            self.new.blobs[sha] = content
        return sha

    def tree_of(self, files: dict[str, str]) -> str:
        """Write the trees of a flattened file map; returns the root tree's id."""
        children: dict[str, dict[str, str]] = {}
        entries: list[TreeEntry] = []
        for path, sha in files.items():
            head, _, rest = path.lstrip("/").partition("/")
            if rest:
                children.setdefault(head, {})["/" + rest] = sha
            else:
                entries.append(TreeEntry(BLOB_MODE, head, sha))
        for name, sub in children.items():
            entries.append(TreeEntry(TREE_MODE, name, self.tree_of(sub)))
        entries.sort(key=lambda e: e.name + ("/" if e.is_tree else ""))
        body = b"".join(f"{e.mode} {e.name}\0".encode() + bytes.fromhex(e.sha) for e in entries)
        sha = _object_id("tree", body)
        if sha not in self.base.trees:
            self.new.trees[sha] = tuple(entries)
        return sha

    def commit(self, files: dict[str, str], parents: tuple[str, ...], author: Signature, committer: Signature,
               comment: str) -> Commit:
        tree = self.tree_of(files)
        lines = [f"tree {tree}", *(f"parent {p}" for p in parents),
                 f"author {author.name} <{author.email}> {author.epoch} +0000",
                 f"committer {committer.name} <{committer.email}> {committer.epoch} +0000", "", comment]
        sha = _object_id("commit", "\n".join(lines).encode())
        made = Commit(sha, tree, parents, author, committer, comment, dict(files))
        self.new.commits[sha] = made
        return made

    def commit_by_id(self, sha: str) -> Commit | None:
        return self.new.commits.get(sha) or self.base.commits.get(sha)
