"""Sealed tenant keys: how a pseudonymization key reaches a gateway through the broker
without the broker (or anyone reading its retained messages) being able to read it.

At enrolment the gateway makes an X25519 key pair; the private part stays on the device,
the public part is sent with its enrolment request and kept on its registry row. The
cloud seals each tenant key to that public key, in the manner of ECIES (and of HPKE's
base mode): a fresh ephemeral X25519 key pair per seal, HKDF-SHA256 over the shared
secret (salted with both public keys) gives a ChaCha20-Poly1305 key and nonce, and the
associated data binds the tenant, store, gateway, key id and config version. A seal thus
opens only on the gateway it was made for, only as the key it names, and only inside the
config version that carries it: moved to another gateway, relabelled, replayed into
another version or changed by one bit, it is refused.

The wire form is one line of text (`SealedKey.to_text`):

    v1.<key id>.<ephemeral public key, base64url>.<ciphertext and tag, base64url>

`SealedKey.from_text` parses it without any cryptography, so a config can be checked
before a key is opened, and refuses anything else with a `ContractError` that never
echoes the input.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.errors import ContractError
from shared.pseudonym import KEY_ID_PATTERN, MAX_KEY_BYTES, MIN_KEY_BYTES, TenantKey

#: The one format this build writes and reads; a later one gets a new number.
SEAL_FORMAT = 1
PUBLIC_KEY_BYTES = 32
TAG_BYTES = 16
#: The longest sealed key's text (a 64-byte secret): bounds what a config may carry.
MAX_SEALED_CHARS = 200
_PREFIX = f"v{SEAL_FORMAT}"
_INFO = b"vitrina sealed tenant key v1"
_AAD_LABEL = b"vitrina-seal-v1"
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_ANY_FORMAT = re.compile(r"^v(\d{1,4})$")


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str, what: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise ContractError(f"sealed key: {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ContractError(f"sealed key: {what} is not base64url") from None


@dataclass(frozen=True, slots=True)
class SealContext:
    """What a seal is bound to besides the gateway's key pair: its associated data."""

    tenant: str
    store: str
    gateway: str
    config_version: int

    def associated_data(self, key_id: str) -> bytes:
        # NUL never occurs in an id (segments and key ids are [a-z0-9_-]), so the parts
        # cannot run into each other.
        parts = (_AAD_LABEL, self.tenant.encode(), self.store.encode(),
                 self.gateway.encode(), key_id.encode(), str(self.config_version).encode())
        return b"\x00".join(parts)


@dataclass(frozen=True, slots=True)
class SealedKey:
    """One tenant key sealed to one gateway; the key id is readable, the secret is not."""

    key_id: str
    ephemeral_public: bytes
    ciphertext: bytes
    format: int = SEAL_FORMAT

    def __post_init__(self) -> None:
        if self.format != SEAL_FORMAT:
            raise ContractError(
                f"sealed key format v{self.format} is not supported: this build reads "
                f"v{SEAL_FORMAT}")
        if not isinstance(self.key_id, str) or not KEY_ID_PATTERN.fullmatch(self.key_id):
            raise ContractError("sealed key: the key id must be 1-16 characters of a-z, 0-9 "
                                "and '-'")
        if len(self.ephemeral_public) != PUBLIC_KEY_BYTES:
            raise ContractError(f"sealed key: the ephemeral public key must be "
                                f"{PUBLIC_KEY_BYTES} bytes")
        if not MIN_KEY_BYTES + TAG_BYTES <= len(self.ciphertext) <= MAX_KEY_BYTES + TAG_BYTES:
            raise ContractError("sealed key: the ciphertext has the wrong length for a key")

    def to_text(self) -> str:
        return ".".join((_PREFIX, self.key_id, _encode(self.ephemeral_public),
                         _encode(self.ciphertext)))

    @classmethod
    def from_text(cls, text: object) -> SealedKey:
        """Parse the wire form; ContractError (naming the part, never the value) otherwise."""
        if not isinstance(text, str):
            raise ContractError("sealed key must be text")
        if len(text) > MAX_SEALED_CHARS:
            raise ContractError(f"sealed key is longer than {MAX_SEALED_CHARS} characters")
        parts = text.split(".")
        if len(parts) != 4:
            raise ContractError("sealed key must be 'v1.<key id>.<ephemeral key>.<ciphertext>'")
        version, key_id, ephemeral, ciphertext = parts
        matched = _ANY_FORMAT.fullmatch(version)
        if matched is None:
            raise ContractError("sealed key must start with its format, e.g. 'v1'")
        return cls(key_id=key_id, ephemeral_public=_decode(ephemeral, "the ephemeral key"),
                   ciphertext=_decode(ciphertext, "the ciphertext"),
                   format=int(matched.group(1)))


def _cipher(shared_secret: bytes, ephemeral: bytes, recipient: bytes
            ) -> tuple[ChaCha20Poly1305, bytes]:
    material = HKDF(algorithm=hashes.SHA256(), length=32 + 12, salt=ephemeral + recipient,
                    info=_INFO).derive(shared_secret)
    return ChaCha20Poly1305(material[:32]), material[32:]


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def seal_key(key: TenantKey, *, recipient: bytes, context: SealContext) -> SealedKey:
    """`key` sealed to the gateway whose X25519 public key is `recipient` (raw, 32 bytes)."""
    if len(recipient) != PUBLIC_KEY_BYTES:
        raise ContractError(f"a gateway's sealing key must be {PUBLIC_KEY_BYTES} bytes")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = _raw_public(ephemeral.public_key())
    shared_secret = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    cipher, nonce = _cipher(shared_secret, ephemeral_public, recipient)
    ciphertext = cipher.encrypt(nonce, key.secret, context.associated_data(key.key_id))
    return SealedKey(key_id=key.key_id, ephemeral_public=ephemeral_public, ciphertext=ciphertext)


def open_key(sealed: SealedKey, *, private_key: X25519PrivateKey, context: SealContext
             ) -> TenantKey:
    """The tenant key inside `sealed`; ContractError if it was not sealed to this key pair
    in this context, or was changed on the way."""
    recipient = _raw_public(private_key.public_key())
    try:
        shared_secret = private_key.exchange(
            X25519PublicKey.from_public_bytes(sealed.ephemeral_public))
        cipher, nonce = _cipher(shared_secret, sealed.ephemeral_public, recipient)
        secret = cipher.decrypt(nonce, sealed.ciphertext, context.associated_data(sealed.key_id))
    except (InvalidTag, ValueError):
        # ValueError: an all-zero shared secret (a low-order ephemeral key)
        raise ContractError(
            f"sealed key {sealed.key_id!r} does not open on this gateway: it was sealed to "
            "another gateway, for another config version, or changed on the way") from None
    return TenantKey(key_id=sealed.key_id, secret=secret)


# -- the gateway's key pair -------------------------------------------------------------

def new_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def private_key_pem(key: X25519PrivateKey) -> str:
    """PKCS#8 PEM, as `openssl pkey` reads it."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def load_private_key(pem: bytes) -> X25519PrivateKey:
    """ContractError unless `pem` is an unencrypted X25519 private key."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ContractError("not an unencrypted PEM private key") from None
    if not isinstance(key, X25519PrivateKey):
        raise ContractError("the sealing key must be an X25519 key")
    return key


def public_key_text(key: X25519PrivateKey | X25519PublicKey) -> str:
    """The public part as it travels and is stored: raw 32 bytes, base64url."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return _encode(_raw_public(public))


def parse_public_key(text: str) -> bytes:
    """Raw 32 bytes from `public_key_text`'s form; ContractError otherwise."""
    if not isinstance(text, str) or len(text) != 43:
        raise ContractError("a sealing public key is 32 bytes in base64url (43 characters)")
    raw = _decode(text, "the public key")
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ContractError("a sealing public key is 32 bytes in base64url (43 characters)")
    return raw
