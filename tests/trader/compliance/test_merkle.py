"""RFC 6962 Merkle tree hash and inclusion proofs, against hand-built trees and the CT reference vectors."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.compliance.merkle import EMPTY_ROOT, audit_path, leaf_hash, merkle_root, node_hash, verify_inclusion


def sha(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def reference_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 written out recursively, independent of the level-by-level code under test."""
    if not leaves:
        return sha(b"")
    if len(leaves) == 1:
        return sha(b"\x00", leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha(b"\x01", reference_mth(leaves[:k]), reference_mth(leaves[k:]))


# The test vectors of the Certificate Transparency reference implementation (merkle_tree_test.cc),
# reused by trillian and other RFC 6962 implementations.
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATHS = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


def test_empty_tree_is_sha256_of_the_empty_string():
    assert merkle_root([]) == EMPTY_ROOT == bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_small_trees_match_the_rfc_6962_formulas_by_hand():
    a, b, c, d, e = b"a", b"b", b"c", b"d", b"e"
    la, lb, lc, ld, le = (sha(b"\x00", x) for x in (a, b, c, d, e))
    assert merkle_root([a]) == la
    assert merkle_root([a, b]) == sha(b"\x01", la, lb)
    assert merkle_root([a, b, c]) == sha(b"\x01", sha(b"\x01", la, lb), lc)  # split at 2: the largest power of two < 3
    ab_cd = sha(b"\x01", sha(b"\x01", la, lb), sha(b"\x01", lc, ld))
    assert merkle_root([a, b, c, d, e]) == sha(b"\x01", ab_cd, le)  # split at 4, e is a lone right subtree
    assert (leaf_hash(a), node_hash(la, lb)) == (la, sha(b"\x01", la, lb))


def test_roots_match_the_certificate_transparency_reference_vectors():
    assert [merkle_root(CT_LEAVES[:n]).hex() for n in range(1, 9)] == CT_ROOTS


@pytest.mark.parametrize(("index", "size", "path"), CT_PATHS)
def test_audit_paths_match_the_reference_vectors_and_verify(index, size, path):
    leaves = CT_LEAVES[:size]
    assert [p.hex() for p in audit_path(leaves, index)] == path
    assert verify_inclusion(leaves[index], index, size, [bytes.fromhex(p) for p in path], bytes.fromhex(CT_ROOTS[size - 1]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_every_leaf_proves_inclusion_and_a_wrong_leaf_index_or_path_does_not(leaves, data):
    root = merkle_root(leaves)
    assert root == reference_mth(leaves)
    index = data.draw(st.integers(0, len(leaves) - 1))
    path = audit_path(leaves, index)
    assert verify_inclusion(leaves[index], index, len(leaves), path, root)
    assert not verify_inclusion(leaves[index] + b"!", index, len(leaves), path, root)
    if len(leaves) > 1:
        other = (index + 1) % len(leaves)
        assert not verify_inclusion(leaves[index], other, len(leaves), path, root) or leaves[other] == leaves[index]
        flipped = [bytes([path[0][0] ^ 1]) + path[0][1:], *path[1:]]
        assert not verify_inclusion(leaves[index], index, len(leaves), flipped, root)
        assert not verify_inclusion(leaves[index], index, len(leaves), path[:-1], root)
        assert not verify_inclusion(leaves[index], index, len(leaves), [*path, path[0]], root)


def test_audit_path_refuses_an_index_outside_the_tree_and_verification_rejects_it():
    with pytest.raises(IndexError, match="leaf 3 is outside a tree of 3 leaves"):
        audit_path([b"a", b"b", b"c"], 3)
    assert not verify_inclusion(b"a", 3, 3, [], merkle_root([b"a", b"b", b"c"]))
