"""Envelope encryption for Meta access tokens stored in Postgres.

Each ``encrypt`` asks KMS for a fresh AES-256 data key (``GenerateDataKey``) under an
encryption context ``{"tenant_id": ..., "credential": ...}`` and seals the token with
AES-256-GCM. The result is one self-describing blob (version 1)::

    0x01 | uint16 big-endian len(edk) | edk | nonce (12 bytes) | ciphertext || tag (16 bytes)

``edk`` is the KMS-encrypted data key. The GCM additional authenticated data is the version
byte plus the canonical JSON of the encryption context, so a blob copied into another
tenant's row (or under another credential name) is refused twice: KMS will not decrypt the
data key under the wrong context, and GCM would not open the ciphertext either.

Decrypted data keys are cached per container (bounded by time and size, LRU, thread-safe),
keyed by (edk, context): a warm container calls KMS ``Decrypt`` once per cache window per
token. Nothing else is cached. Plaintext, keys and ciphertext are never logged or put into
exception messages.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from shared.platform.observability import logger

# botocore and cryptography are imported on first use, not here: every function that reads a
# credential row imports this module, and most of them decrypt nothing on their first event
# (cold start, measured by `make bench ONLY=cold_start`).

__all__ = [
    "BLOB_VERSION",
    "TokenCipher",
    "TokenCipherError",
    "TokenDecryptError",
    "get_token_cipher",
    "reset_token_cipher",
]

BLOB_VERSION = 1
_VERSION_BYTE = bytes([BLOB_VERSION])
_EDK_LEN = struct.Struct(">H")
_NONCE_SIZE = 12
_TAG_SIZE = 16
_DATA_KEY_SIZE = 32
_HEADER_SIZE = 1 + _EDK_LEN.size
_MIN_BLOB_SIZE = _HEADER_SIZE + 1 + _NONCE_SIZE + _TAG_SIZE

# KMS answers with these when the ciphertext or its encryption context is wrong: the blob
# cannot be opened under this (tenant, credential), as opposed to KMS being unreachable.
_UNDECRYPTABLE_KMS_CODES = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


class TokenCipherError(Exception):
    """Token encryption or decryption could not be performed (e.g. KMS unavailable)."""


class TokenDecryptError(TokenCipherError):
    """The blob cannot be decrypted under this tenant/credential: malformed, tampered, wrong
    context or unknown version. Messages never include plaintext, keys or ciphertext."""


def _context(tenant_id: str, credential: str) -> dict[str, str]:
    if not isinstance(tenant_id, str) or not tenant_id:
        raise ValueError("tenant_id must be a non-empty string")
    if not isinstance(credential, str) or not credential:
        raise ValueError("credential must be a non-empty string")
    return {"tenant_id": tenant_id, "credential": credential}


def _aad(context: dict[str, str]) -> bytes:
    canonical = json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _VERSION_BYTE + canonical.encode("utf-8")


def _client_error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


class TokenCipher:
    """Envelope encryption of short secrets (Meta tokens) with KMS data keys + AES-256-GCM."""

    def __init__(
        self,
        key_id: str,
        kms_client: Any = None,
        cache_ttl_seconds: float = 300.0,
        cache_size: int = 1024,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not key_id:
            raise ValueError("key_id is required (TOKEN_KMS_KEY_ID)")
        if cache_ttl_seconds < 0:
            raise ValueError("cache_ttl_seconds must be >= 0")
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self.key_id = key_id
        self.cache_ttl_seconds = float(cache_ttl_seconds)
        self.cache_size = int(cache_size)
        self._clock = clock
        self._kms = kms_client
        self._client_lock = threading.Lock()
        self._lock = threading.Lock()
        # (edk, tenant_id, credential) -> (data key, expires at per self._clock)
        self._cache: OrderedDict[tuple[bytes, str, str], tuple[bytes, float]] = OrderedDict()
        self.kms_calls = 0
        self.kms_generate_calls = 0
        self.kms_decrypt_calls = 0
        self.cache_hits = 0

    # ------------------------------------------------------------------ KMS client

    @property
    def kms(self) -> Any:
        """The KMS client, created on first use (honours AWS_ENDPOINT_URL natively)."""
        if self._kms is None:
            with self._client_lock:
                if self._kms is None:
                    from botocore.config import Config

                    from shared.platform.aws import (
                        create_client,  # botocore's: see shared.platform.aws
                    )

                    self._kms = create_client(
                        "kms",
                        Config(
                            retries={"mode": "standard", "max_attempts": 3},
                            connect_timeout=2,
                            read_timeout=5,
                        ),
                    )
        return self._kms

    def _count(self, operation: str) -> None:
        with self._lock:
            self.kms_calls += 1
            if operation == "GenerateDataKey":
                self.kms_generate_calls += 1
            else:
                self.kms_decrypt_calls += 1

    # ------------------------------------------------------------------ cache

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _cache_get(self, key: tuple[bytes, str, str]) -> bytes | None:
        if not self.cache_size or self.cache_ttl_seconds <= 0:
            return None
        now = self._clock()
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            data_key, expires_at = entry
            if now >= expires_at:
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return data_key

    def _cache_put(self, key: tuple[bytes, str, str], data_key: bytes) -> None:
        if not self.cache_size or self.cache_ttl_seconds <= 0:
            return
        expires_at = self._clock() + self.cache_ttl_seconds
        with self._lock:
            self._cache[key] = (data_key, expires_at)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    # ------------------------------------------------------------------ public API

    def encrypt(self, plaintext: str, *, tenant_id: str, credential: str) -> bytes:
        if not isinstance(plaintext, str):
            raise TypeError("plaintext must be a str")
        from botocore.exceptions import BotoCoreError, ClientError
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        context = _context(tenant_id, credential)
        self._count("GenerateDataKey")
        try:
            response = self.kms.generate_data_key(
                KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=context
            )
        except (BotoCoreError, ClientError) as exc:
            code = _client_error_code(exc) or type(exc).__name__
            logger.warning("KMS GenerateDataKey failed", extra={"kms_error": code})
            raise TokenCipherError(f"KMS GenerateDataKey failed ({code})") from None
        data_key: bytes = response["Plaintext"]
        edk: bytes = response["CiphertextBlob"]
        if len(data_key) != _DATA_KEY_SIZE or not edk or len(edk) > 0xFFFF:
            raise TokenCipherError("KMS returned an unexpected data key")
        nonce = os.urandom(_NONCE_SIZE)
        sealed = AESGCM(data_key).encrypt(nonce, plaintext.encode("utf-8"), _aad(context))
        return _VERSION_BYTE + _EDK_LEN.pack(len(edk)) + edk + nonce + sealed

    def decrypt(self, blob: bytes, *, tenant_id: str, credential: str) -> str:
        context = _context(tenant_id, credential)
        if isinstance(blob, memoryview | bytearray):
            blob = bytes(blob)
        if not isinstance(blob, bytes):
            raise TokenDecryptError("token blob must be bytes")
        if len(blob) < _MIN_BLOB_SIZE:
            raise TokenDecryptError("token blob is truncated")
        if blob[0] != BLOB_VERSION:
            raise TokenDecryptError(f"unsupported token blob version {blob[0]}")
        (edk_len,) = _EDK_LEN.unpack_from(blob, 1)
        edk_end = _HEADER_SIZE + edk_len
        if edk_len == 0 or len(blob) < edk_end + _NONCE_SIZE + _TAG_SIZE:
            raise TokenDecryptError("token blob is truncated")
        edk = blob[_HEADER_SIZE:edk_end]
        nonce = blob[edk_end : edk_end + _NONCE_SIZE]
        sealed = blob[edk_end + _NONCE_SIZE :]

        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        data_key = self._data_key(edk, context)
        try:
            plaintext = AESGCM(data_key).decrypt(nonce, sealed, _aad(context))
        except InvalidTag:
            raise TokenDecryptError("token blob failed authentication") from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:  # pragma: no cover - GCM authenticated it; defensive
            raise TokenDecryptError("token plaintext is not UTF-8") from None

    # ------------------------------------------------------------------ internals

    def _data_key(self, edk: bytes, context: dict[str, str]) -> bytes:
        cache_key = (edk, context["tenant_id"], context["credential"])
        cached = self._cache_get(cache_key)
        if cached is not None:
            return cached
        from botocore.exceptions import BotoCoreError, ClientError

        self._count("Decrypt")
        try:
            response = self.kms.decrypt(
                CiphertextBlob=edk, EncryptionContext=context, KeyId=self.key_id
            )
        except (BotoCoreError, ClientError) as exc:
            code = _client_error_code(exc)
            if code in _UNDECRYPTABLE_KMS_CODES:
                logger.warning(
                    "KMS refused the token data key",
                    extra={"kms_error": code, "tenant_id": context["tenant_id"]},
                )
                raise TokenDecryptError(
                    f"KMS refused the data key for this tenant/credential ({code})"
                ) from None
            code = code or type(exc).__name__
            logger.warning("KMS Decrypt failed", extra={"kms_error": code})
            raise TokenCipherError(f"KMS Decrypt failed ({code})") from None
        data_key: bytes = response["Plaintext"]
        if len(data_key) != _DATA_KEY_SIZE:
            raise TokenDecryptError("KMS returned a data key of unexpected size")
        self._cache_put(cache_key, data_key)
        return data_key


_cipher: TokenCipher | None = None
_cipher_lock = threading.Lock()


def get_token_cipher() -> TokenCipher:
    """The container-wide TokenCipher for TOKEN_KMS_KEY_ID (built on first use)."""
    global _cipher
    if _cipher is None:
        with _cipher_lock:
            if _cipher is None:
                from shared.platform.settings import get_settings

                settings = get_settings()
                if not settings.token_kms_key_id:
                    raise RuntimeError("TOKEN_KMS_KEY_ID must be set")
                _cipher = TokenCipher(settings.token_kms_key_id,
                                      cache_size=settings.token_key_cache_size)
    return _cipher


def reset_token_cipher() -> None:
    """Forget the container-wide cipher (and its cache, client and counters). For tests."""
    global _cipher
    with _cipher_lock:
        if _cipher is not None:
            _cipher.clear_cache()
        _cipher = None
