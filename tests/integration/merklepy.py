"""RFC 9162 proof verification and signed-checkpoint parsing in plain Python (hashlib, base64,
python3-cryptography), written from the RFC and the C2SP specs for the crash and tamper tests;
independent of Sluice's C code (the Go verifier in tlogcheck/ is the other independent one)."""
import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_consistency(m, n, root_m, root_n, proof):
    """RFC 9162 2.1.4.2: True if the tree of size n (root_n) extends the one of size m."""
    if m < 1 or m > n:
        return False
    if m == n:
        return not proof and root_m == root_n
    if not proof:
        return False
    if m & (m - 1) == 0:
        proof = [root_m] + list(proof)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root_m and sr == root_n


def verify_inclusion(leaf, index, n, proof, root):
    """RFC 9162 2.1.3.2."""
    if index >= n:
        return False
    fn, sn, r = index, n - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def open_checkpoint(text, vkey):
    """Checks the note's Ed25519 signature by vkey (name+id+base64); returns (origin, size, root).
    Raises on a bad signature or a malformed note."""
    name, kid_hex, b64 = vkey.strip().split("+", 2)
    key = base64.b64decode(b64)
    assert key[0] == 1 and len(key) == 33, "not an Ed25519 verifier key"
    kid = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    assert kid.hex() == kid_hex, "key id %s, computed %s" % (kid_hex, kid.hex())
    i = text.rindex("\n\n")
    body = text[: i + 1]
    pub = Ed25519PublicKey.from_public_bytes(key[1:])
    for line in text[i + 2:].splitlines():
        assert line.startswith("\u2014 "), "bad signature line %r" % line
        sname, sb64 = line[2:].split(" ")
        raw = base64.b64decode(sb64)
        if sname == name and raw[:4] == kid:
            pub.verify(raw[4:], body.encode())  # raises InvalidSignature
            origin, size, root = body.split("\n")[:3]
            return origin, int(size), base64.b64decode(root)
    raise AssertionError("no signature by %s" % name)


def hashes(j):
    return [bytes.fromhex(h) for h in j["hashes"]]
