"""The cryptographic primitives secure aggregation uses, every one from the ``cryptography`` package.

- X25519 key pairs and Diffie-Hellman agreement, each shared secret stretched
  by HKDF-SHA256 with a label and the round, so that one agreement never
  serves two purposes or two rounds;
- AES-256-GCM for the shares sent through the server, with (round, sender,
  receiver) as associated data, so a share replayed to another pair fails;
- ChaCha20's keystream as the pseudo-random generator that expands a 32-byte
  seed into a mask;
- SHA-256 as the commitment to a self-mask seed;
- Ed25519 signatures under each client's long-term key (the active-adversary
  protocol): on its key advert, and on the survivor list it was given.
"""

from __future__ import annotations

import hashlib
import os
import struct

import numpy as np
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
RAW = serialization.Encoding.Raw


class Tampered(Exception):
    """A ciphertext failed authentication: it was altered, or sealed under another key or for another pair."""


def new_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(RAW, serialization.PublicFormat.Raw)


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def private_key_from(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def agree(own: X25519PrivateKey, other_public: bytes, label: bytes, rnd: int) -> bytes:
    """A 32-byte key both ends derive alike: HKDF-SHA256(X25519(own, other), info = label | round)."""
    shared = own.exchange(X25519PublicKey.from_public_bytes(other_public))
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=label + struct.pack("<q", rnd)).derive(shared)


def associated(rnd: int, sender: int, receiver: int) -> bytes:
    return struct.pack("<qqq", rnd, sender, receiver)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """nonce | AES-GCM(plaintext) | tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, message: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(message[:NONCE_BYTES], message[NONCE_BYTES:], aad)
    except InvalidTag:
        raise Tampered from None


def sealed_size(plaintext_bytes: int) -> int:
    return NONCE_BYTES + plaintext_bytes + TAG_BYTES


def expand(seed: bytes, count: int, dtype: np.dtype) -> np.ndarray:
    """``count`` pseudo-random values of an unsigned dtype: ChaCha20's keystream under key ``seed``."""
    dtype = np.dtype(dtype)
    stream = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor()
    return np.frombuffer(stream.update(bytes(count * dtype.itemsize)), dtype=dtype)


def expand_at(seed: bytes, counter: int, count: int, dtype: np.dtype) -> np.ndarray:
    """The same keystream generator at nonce ``counter``: one fresh pad per (key, counter), so one agreed key
    masks many vectors (each of a tree's histograms)."""
    dtype = np.dtype(dtype)
    stream = Cipher(algorithms.ChaCha20(seed, struct.pack("<QQ", 0, counter)), mode=None).encryptor()
    return np.frombuffer(stream.update(bytes(count * dtype.itemsize)), dtype=dtype)


def commit(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def random_seed() -> bytes:
    return os.urandom(KEY_BYTES)


# -- long-term identities (the active-adversary protocol): Ed25519 signatures --------------------------------

SIGNATURE_BYTES = 64


def new_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def verify_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(RAW, serialization.PublicFormat.Raw)


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(message)


def verifies(public: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is the holder of ``public``'s over ``message`` (False for any malformed input)."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False
