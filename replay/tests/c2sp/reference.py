#!/usr/bin/env python3
"""An independent reference for Chronicle's checkpoints (replay/src/checkpoint.rs): a C2SP
tlog-checkpoint signed as a C2SP signed note with Ed25519, using Python's `cryptography`
and `hashlib` only. Writes note.txt, which the unit tests compare byte for byte.
Regenerate: python3 replay/tests/c2sp/reference.py > replay/tests/c2sp/note.txt
"""

import base64
import hashlib
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
name = "chronicle/CHRONICLE"
key = Ed25519PrivateKey.from_private_bytes(seed)
public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
root = hashlib.sha256(b"root").digest()
text = f"{name}\n1000\n{base64.b64encode(root).decode()}\n"
key_id = hashlib.sha256(name.encode() + b"\n" + b"\x01" + public).digest()[:4]
signature = key.sign(text.encode())
sys.stdout.write(f"{text}\n\u2014 {name} {base64.b64encode(key_id + signature).decode()}\n")
