#!/usr/bin/env python3
"""An independent reference for RFC 9162 section 2.1, written from the RFC's recursive
definitions (MTH, PATH, PROOF/SUBPROOF) with nothing but hashlib, to compute the
known-answer vectors in vectors.json that events/tests/rfc9162.rs checks Chronicle's
Merkle code against. Leaves are 32-byte values (Chronicle's event hashes): leaf i is
SHA-256("leaf-<i>"). Regenerate: python3 events/tests/rfc9162/reference.py > events/tests/rfc9162/vectors.json
"""

import hashlib
import json


def sha(b):
    return hashlib.sha256(b).digest()


def mth(d):
    n = len(d)
    if n == 0:
        return sha(b"")
    if n == 1:
        return sha(b"\x00" + d[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return sha(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m, d):
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m, d, b):
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def proof(m, d):
    return subproof(m, d, True)


leaves = [sha(f"leaf-{i}".encode()) for i in range(40)]
sizes = list(range(1, 18)) + [31, 32, 33, 40]
out = {"leaves": [l.hex() for l in leaves], "roots": {}, "inclusion": [], "consistency": []}
for n in sizes:
    d = leaves[:n]
    out["roots"][str(n)] = mth(d).hex()
    for m in range(n):
        out["inclusion"].append({"index": m, "size": n, "path": [h.hex() for h in path(m, d)]})
    for m in range(1, n + 1):
        out["consistency"].append({"from": m, "to": n, "proof": [h.hex() for h in proof(m, d)]})
out["roots"]["0"] = mth([]).hex()
print(json.dumps(out, indent=0))
