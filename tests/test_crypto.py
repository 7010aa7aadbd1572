"""shared.platform.crypto against moto's KMS over HTTP (no mocks of our code)."""

from __future__ import annotations

import struct
import threading

import boto3
import pytest

from shared.platform import crypto
from shared.platform.crypto import (
    TokenCipher,
    TokenCipherError,
    TokenDecryptError,
    get_token_cipher,
    reset_token_cipher,
)

# moto_server / aws_env; a no-op once a conftest registers the same plugin.
pytest_plugins = ["tests.fixtures_aws"]

AWS_REGION = "us-east-1"
TOKEN = "EAAGm0PX4ZCpsBO-secret-long-lived-token-ZZZ"
TENANT = "tenant-a"
CRED = "meta_user_token"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kms(moto_server: str):
    client = boto3.client(
        "kms",
        endpoint_url=moto_server,
        region_name=AWS_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    # Count the Decrypt/GenerateDataKey requests actually sent, independently of the cipher.
    client.sent = {"Decrypt": 0, "GenerateDataKey": 0}

    def _count(model, **_kwargs):
        if model.name in client.sent:
            client.sent[model.name] += 1

    client.meta.events.register("before-call.kms.*", _count)
    return client


@pytest.fixture
def key_id(kms) -> str:
    return kms.create_key(Description="token test key")["KeyMetadata"]["KeyId"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cipher(kms, key_id, clock) -> TokenCipher:
    return TokenCipher(key_id, kms_client=kms, clock=clock)


def _flip(blob: bytes, index: int) -> bytes:
    mutable = bytearray(blob)
    mutable[index] ^= 0x01
    return bytes(mutable)


def _layout(blob: bytes) -> tuple[int, int]:
    """(start of the encrypted data key, start of the nonce)."""
    (edk_len,) = struct.unpack_from(">H", blob, 1)
    return 3, 3 + edk_len


# ---------------------------------------------------------------- round trip and format


@pytest.mark.parametrize("plaintext", [TOKEN, "ñandú-🔑-token", "x" * 5000, ""])
def test_round_trip(cipher: TokenCipher, plaintext: str) -> None:
    blob = cipher.encrypt(plaintext, tenant_id=TENANT, credential=CRED)
    assert isinstance(blob, bytes)
    assert cipher.decrypt(blob, tenant_id=TENANT, credential=CRED) == plaintext


def test_blob_layout_is_versioned_and_self_describing(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    assert blob[0] == 1
    edk_start, nonce_start = _layout(blob)
    assert nonce_start > edk_start
    # nonce (12) + ciphertext (same length as the UTF-8 plaintext) + tag (16)
    assert len(blob) == nonce_start + 12 + len(TOKEN.encode()) + 16


def test_accepts_bytearray_and_memoryview(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    assert cipher.decrypt(bytearray(blob), tenant_id=TENANT, credential=CRED) == TOKEN
    assert cipher.decrypt(memoryview(blob), tenant_id=TENANT, credential=CRED) == TOKEN


def test_plaintext_never_in_blob(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    assert TOKEN.encode() not in blob
    assert TOKEN.encode()[:8] not in blob
    assert TOKEN.encode("utf-16-le") not in blob


def test_two_encrypts_differ_and_use_fresh_data_keys(cipher: TokenCipher, kms) -> None:
    first = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    second = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    assert first != second
    (s1, n1), (s2, n2) = _layout(first), _layout(second)
    assert first[s1:n1] != second[s2:n2]  # different encrypted data keys
    assert first[n1 : n1 + 12] != second[n2 : n2 + 12]  # different nonces
    assert cipher.kms_generate_calls == 2 == kms.sent["GenerateDataKey"]
    for blob in (first, second):
        assert cipher.decrypt(blob, tenant_id=TENANT, credential=CRED) == TOKEN


# ---------------------------------------------------------------- context binding


def test_wrong_tenant_fails(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    with pytest.raises(TokenDecryptError):
        cipher.decrypt(blob, tenant_id="tenant-b", credential=CRED)


def test_wrong_credential_fails(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    with pytest.raises(TokenDecryptError):
        cipher.decrypt(blob, tenant_id=TENANT, credential="whatsapp_system_user_token")


def test_wrong_tenant_fails_even_when_data_key_is_cached(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    assert cipher.decrypt(blob, tenant_id=TENANT, credential=CRED) == TOKEN
    with pytest.raises(TokenDecryptError):
        cipher.decrypt(blob, tenant_id="tenant-b", credential=CRED)
    # and the refusal did not poison the cache for the rightful owner
    assert cipher.decrypt(blob, tenant_id=TENANT, credential=CRED) == TOKEN


def test_context_is_not_ambiguous(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id="a", credential="b:c")
    with pytest.raises(TokenDecryptError):
        cipher.decrypt(blob, tenant_id="a:b", credential="c")


@pytest.mark.parametrize("tenant_id, credential", [("", CRED), (TENANT, ""), (None, CRED)])
def test_empty_context_rejected(cipher: TokenCipher, tenant_id, credential) -> None:
    with pytest.raises(ValueError):
        cipher.encrypt(TOKEN, tenant_id=tenant_id, credential=credential)


# ---------------------------------------------------------------- tampering and malformed


def test_tampered_ciphertext_fails(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    _, nonce_start = _layout(blob)
    for index in (nonce_start + 12, len(blob) - 17, len(blob) - 1):  # first/last ct, tag
        with pytest.raises(TokenDecryptError):
            cipher.decrypt(_flip(blob, index), tenant_id=TENANT, credential=CRED)


def test_tampered_nonce_fails(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    _, nonce_start = _layout(blob)
    for index in (nonce_start, nonce_start + 11):
        with pytest.raises(TokenDecryptError):
            cipher.decrypt(_flip(blob, index), tenant_id=TENANT, credential=CRED)


def test_tampered_encrypted_data_key_fails(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    _, nonce_start = _layout(blob)
    with pytest.raises(TokenDecryptError):
        cipher.decrypt(_flip(blob, nonce_start - 1), tenant_id=TENANT, credential=CRED)


def test_tampered_data_key_length_fails(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    for bad_len in (0, 1, 0xFFFF):
        forged = blob[:1] + struct.pack(">H", bad_len) + blob[3:]
        with pytest.raises(TokenCipherError):
            cipher.decrypt(forged, tenant_id=TENANT, credential=CRED)


@pytest.mark.parametrize("version", [0, 2, 0xFF])
def test_unknown_version_fails(cipher: TokenCipher, version: int) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    with pytest.raises(TokenDecryptError, match="version"):
        cipher.decrypt(bytes([version]) + blob[1:], tenant_id=TENANT, credential=CRED)
    assert cipher.kms_decrypt_calls == 0  # rejected before KMS


def test_truncated_blob_fails(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    _, nonce_start = _layout(blob)
    for cut in (0, 1, 2, 3, 10, nonce_start, nonce_start + 12, nonce_start + 27):
        with pytest.raises(TokenDecryptError):
            cipher.decrypt(blob[:cut], tenant_id=TENANT, credential=CRED)
    assert cipher.kms_decrypt_calls == 0  # all rejected before KMS
    with pytest.raises(TokenDecryptError):  # ciphertext shortened: GCM tag check fails
        cipher.decrypt(blob[:-1], tenant_id=TENANT, credential=CRED)


def test_non_bytes_blob_fails(cipher: TokenCipher) -> None:
    with pytest.raises(TokenDecryptError):
        cipher.decrypt("not bytes", tenant_id=TENANT, credential=CRED)  # type: ignore[arg-type]


def test_errors_and_logs_leak_nothing(cipher: TokenCipher, capfd) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    _, nonce_start = _layout(blob)
    attempts = [
        (blob, "tenant-b", CRED),
        (_flip(blob, len(blob) - 1), TENANT, CRED),
        (_flip(blob, nonce_start - 1), TENANT, CRED),
        (b"\x07" + blob[1:], TENANT, CRED),
        (blob[:20], TENANT, CRED),
    ]
    for attempt, tenant_id, credential in attempts:
        with pytest.raises(TokenDecryptError) as info:
            cipher.decrypt(attempt, tenant_id=tenant_id, credential=credential)
        message = str(info.value)
        assert TOKEN not in message
        assert blob.hex()[:16] not in message and repr(blob[:8])[2:-1] not in message
        assert info.value.__cause__ is None
    out, err = capfd.readouterr()
    assert TOKEN not in out + err
    assert blob.hex()[:16] not in out + err


# ---------------------------------------------------------------- data key cache


def test_cache_one_kms_decrypt_per_window(cipher: TokenCipher, kms, clock: FakeClock) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    assert cipher.kms_calls == 1  # GenerateDataKey
    for _ in range(1000):
        assert cipher.decrypt(blob, tenant_id=TENANT, credential=CRED) == TOKEN
    assert cipher.kms_decrypt_calls == 1 == kms.sent["Decrypt"]
    assert cipher.kms_calls == 2

    clock.now += 299.0  # still inside the window
    cipher.decrypt(blob, tenant_id=TENANT, credential=CRED)
    assert cipher.kms_decrypt_calls == 1

    clock.now += 1.0  # 300 s after caching: expired
    for _ in range(1000):
        assert cipher.decrypt(blob, tenant_id=TENANT, credential=CRED) == TOKEN
    assert cipher.kms_decrypt_calls == 2 == kms.sent["Decrypt"]
    assert cipher.kms_calls == 3


def test_cache_ttl_is_configurable(kms, key_id, clock: FakeClock) -> None:
    cipher = TokenCipher(key_id, kms_client=kms, cache_ttl_seconds=10, clock=clock)
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    cipher.decrypt(blob, tenant_id=TENANT, credential=CRED)
    clock.now += 9.9
    cipher.decrypt(blob, tenant_id=TENANT, credential=CRED)
    assert cipher.kms_decrypt_calls == 1
    clock.now += 0.1
    cipher.decrypt(blob, tenant_id=TENANT, credential=CRED)
    assert cipher.kms_decrypt_calls == 2


def test_cache_disabled(kms, key_id) -> None:
    for cipher in (
        TokenCipher(key_id, kms_client=kms, cache_ttl_seconds=0),
        TokenCipher(key_id, kms_client=kms, cache_size=0),
    ):
        blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
        for _ in range(3):
            cipher.decrypt(blob, tenant_id=TENANT, credential=CRED)
        assert cipher.kms_decrypt_calls == 3


def test_cache_is_bounded_lru(kms, key_id, clock: FakeClock) -> None:
    cipher = TokenCipher(key_id, kms_client=kms, cache_size=2, clock=clock)
    a, b, c = (cipher.encrypt(TOKEN, tenant_id=t, credential=CRED) for t in ("a", "b", "c"))
    cipher.decrypt(a, tenant_id="a", credential=CRED)
    cipher.decrypt(b, tenant_id="b", credential=CRED)
    cipher.decrypt(a, tenant_id="a", credential=CRED)  # a is now most recently used
    assert cipher.kms_decrypt_calls == 2
    cipher.decrypt(c, tenant_id="c", credential=CRED)  # evicts b
    assert cipher.kms_decrypt_calls == 3
    assert len(cipher._cache) == 2
    cipher.decrypt(a, tenant_id="a", credential=CRED)
    assert cipher.kms_decrypt_calls == 3
    cipher.decrypt(b, tenant_id="b", credential=CRED)
    assert cipher.kms_decrypt_calls == 4


def test_encrypt_does_not_populate_cache(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    assert len(cipher._cache) == 0
    cipher.decrypt(blob, tenant_id=TENANT, credential=CRED)
    assert cipher.kms_decrypt_calls == 1


def test_clear_cache(cipher: TokenCipher) -> None:
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    cipher.decrypt(blob, tenant_id=TENANT, credential=CRED)
    cipher.clear_cache()
    cipher.decrypt(blob, tenant_id=TENANT, credential=CRED)
    assert cipher.kms_decrypt_calls == 2


def test_cache_is_thread_safe(cipher: TokenCipher) -> None:
    blobs = {t: cipher.encrypt(f"{TOKEN}-{t}", tenant_id=t, credential=CRED) for t in "abcd"}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(tenant: str) -> None:
        try:
            barrier.wait()
            for _ in range(200):
                got = cipher.decrypt(blobs[tenant], tenant_id=tenant, credential=CRED)
                assert got == f"{TOKEN}-{tenant}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in "abcdabcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    # at most one concurrent miss per thread; normally one per blob
    assert 4 <= cipher.kms_decrypt_calls <= 8
    assert cipher.kms_calls == cipher.kms_generate_calls + cipher.kms_decrypt_calls


# ---------------------------------------------------------------- KMS client and factory


def test_kms_failure_is_not_a_decrypt_error(kms) -> None:
    cipher = TokenCipher("alias/does-not-exist", kms_client=kms)
    with pytest.raises(TokenCipherError) as info:
        cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    assert not isinstance(info.value, TokenDecryptError)
    assert "NotFoundException" in str(info.value)


def test_client_is_lazy_and_honours_aws_endpoint_url(aws_env, kms, key_id) -> None:
    cipher = TokenCipher(key_id)
    assert cipher._kms is None  # nothing created at construction
    blob = cipher.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
    assert cipher._kms is not None
    assert cipher._kms.meta.endpoint_url == aws_env
    # the key only exists in moto, so a round trip proves the env endpoint was used
    assert cipher.decrypt(blob, tenant_id=TENANT, credential=CRED) == TOKEN


def test_get_token_cipher_is_cached_and_resettable(
    aws_env,
    key_id,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.platform.settings import get_settings

    monkeypatch.setenv("TOKEN_KMS_KEY_ID", key_id)
    get_settings.cache_clear()
    reset_token_cipher()
    try:
        first = get_token_cipher()
        assert first is get_token_cipher()
        assert first.key_id == key_id
        blob = first.encrypt(TOKEN, tenant_id=TENANT, credential=CRED)
        assert first.decrypt(blob, tenant_id=TENANT, credential=CRED) == TOKEN
        reset_token_cipher()
        second = get_token_cipher()
        assert second is not first
        assert second.decrypt(blob, tenant_id=TENANT, credential=CRED) == TOKEN
    finally:
        reset_token_cipher()
        get_settings.cache_clear()


def test_get_token_cipher_requires_key_id(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.platform.settings import get_settings

    monkeypatch.delenv("TOKEN_KMS_KEY_ID", raising=False)
    get_settings.cache_clear()
    reset_token_cipher()
    try:
        with pytest.raises(RuntimeError, match="TOKEN_KMS_KEY_ID"):
            get_token_cipher()
    finally:
        get_settings.cache_clear()


def test_import_creates_no_client() -> None:
    assert crypto._cipher is None or isinstance(crypto._cipher, TokenCipher)
    assert TokenCipher("k")._kms is None
