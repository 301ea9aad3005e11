#!/usr/bin/env python3
"""paseto-resign.py SECRET TOKEN: prints TOKEN (a v4.public PASETO) with the same claims and
footer, signed again with SECRET (a PASERK k4.secret.*). docker-test uses it to forge a token
with the repository's development key (which must be refused) and, as a control, with the
stack's own key (which must be accepted). Python's standard library plus the openssl CLI."""
import base64
import os
import struct
import subprocess
import sys
import tempfile


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def pae(*pieces):
    out = struct.pack("<Q", len(pieces))
    for p in pieces:
        out += struct.pack("<Q", len(p)) + p
    return out


def main():
    secret, token = sys.argv[1].strip(), sys.argv[2].strip()
    if not secret.startswith("k4.secret."):
        sys.exit("not a k4.secret PASERK")
    seed = b64d(secret[len("k4.secret."):])[:32]
    parts = token.split(".")
    if parts[:2] != ["v4", "public"]:
        sys.exit("not a v4.public token")
    message = b64d(parts[2])[:-64]
    footer = b64d(parts[3]) if len(parts) > 3 else b""
    header = b"v4.public."
    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "key.der")
        with open(key, "wb") as f:
            # PKCS#8 wrapping of an Ed25519 seed
            f.write(bytes.fromhex("302e020100300506032b657004220420") + seed)
        msg = os.path.join(tmp, "pae.bin")
        with open(msg, "wb") as f:
            f.write(pae(header, message, footer, b""))
        sig = subprocess.run(
            ["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", key, "-keyform", "DER", "-in", msg],
            capture_output=True, check=True,
        ).stdout
    if len(sig) != 64:
        sys.exit("openssl produced no Ed25519 signature")
    out = header.decode() + b64e(message + sig)
    if footer:
        out += "." + b64e(footer)
    print(out)


if __name__ == "__main__":
    main()
