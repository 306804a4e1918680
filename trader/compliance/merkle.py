"""RFC 6962 (Certificate Transparency) Merkle tree hash, inclusion proofs and their verification.

Definitions (RFC 6962 §2.1), for an ordered list of byte strings ``D[0:n]``::

    MTH({})      = SHA-256()                                   the empty tree
    MTH({d0})    = SHA-256(0x00 || d0)                         a leaf
    MTH(D[0:n])  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))  k = largest power of two < n

The 0x00/0x01 prefixes keep a leaf from ever being passed off as an inner node (second
pre-image attacks). The root here is computed level by level, pairing neighbours and
carrying an odd last node up unchanged; that builds exactly the tree above (the split at
the largest power of two is what makes the left subtrees full).

An audit path (RFC 6962 §2.1.1) lists the sibling hashes from the leaf up to the root;
:func:`verify_inclusion` recomputes the root from a leaf, its index, the tree size and the
path (the algorithm of RFC 9162 §2.1.3.2).

Example:
    >>> leaves = [b"a", b"b", b"c"]
    >>> root = merkle_root(leaves)
    >>> verify_inclusion(b"c", 2, 3, audit_path(leaves, 2), root)
    True
    >>> verify_inclusion(b"x", 2, 3, audit_path(leaves, 2), root)
    False
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _up(level: list[bytes]) -> list[bytes]:
    """The level above: neighbours paired, an odd last node carried up as is."""
    paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])
    return paired


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The RFC 6962 Merkle tree hash of ``leaves`` (``EMPTY_ROOT`` for none).

    Only one level is held at a time, so a million leaves cost tens of megabytes, not hundreds.
    """
    if not leaves:
        return EMPTY_ROOT
    level = [leaf_hash(data) for data in leaves]
    while len(level) > 1:
        level = _up(level)
    return level[0]


def audit_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The RFC 6962 audit path of leaf ``index``: sibling hashes from the bottom up.

    Raises:
        IndexError: ``index`` is outside the tree.
    """
    if not 0 <= index < len(leaves):
        raise IndexError(f"merkle: leaf {index} is outside a tree of {len(leaves)} leaves")
    path = []
    level = [leaf_hash(data) for data in leaves]
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):  # a carried-up last node has no sibling at this level
            path.append(level[sibling])
        level, index = _up(level), index // 2
    return path


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """True if ``leaf`` is entry ``index`` of a tree of ``size`` leaves whose root is ``root``.

    ``leaf`` is the entry's data (it is hashed here with the 0x00 prefix).
    """
    if not 0 <= index < size:
        return False
    fn, sn, node = index, size - 1, leaf_hash(leaf)
    for sibling in path:
        if sn == 0:
            return False  # the path is longer than the tree is deep
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            # Climb past the levels where this node was carried up without a sibling.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and node == root


def audit_paths(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """The audit path of every leaf (as :func:`audit_path`), from one build of the tree: O(n log n), not O(n²).

    >>> leaves = [b"a", b"b", b"c", b"d", b"e"]
    >>> audit_paths(leaves) == [audit_path(leaves, i) for i in range(5)]
    True
    """
    levels = [[leaf_hash(data) for data in leaves]]
    while len(levels[-1]) > 1:
        levels.append(_up(levels[-1]))
    paths = []
    for index in range(len(leaves)):
        path, i = [], index
        for level in levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            i //= 2
        paths.append(path)
    return paths
