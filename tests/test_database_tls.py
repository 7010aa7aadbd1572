"""The functions verify the database they reach: verify-full against the CAs shipped in the
package (shared/platform/certs), in a DSN that a password cannot rewrite."""

from __future__ import annotations

import datetime
import socket
import threading

import psycopg
import pytest
from cryptography import x509
from psycopg.conninfo import conninfo_to_dict

from shared.platform.settings import DATABASE_CA_BUNDLE, dsn_from_secret

SECRET = {"host": "crm-db.internal", "port": 5432, "dbname": "crm", "username": "marketing_app"}


def _bundle() -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(DATABASE_CA_BUNDLE.read_bytes())


def _common_names() -> set[str]:
    return {attr.value for cert in _bundle()
            for attr in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)}


def test_the_bundle_parses_and_holds_the_rds_roots_and_the_proxy_roots():
    names = _common_names()
    # RDS instances and clusters: the G1 root CAs of each region (us-east-1 as a sample).
    for ca in ("RSA2048 G1", "RSA4096 G1", "ECC384 G1"):
        assert f"Amazon RDS us-east-1 Root CA {ca}" in names, ca
    # RDS Proxy presents an ACM certificate: Amazon Trust Services' roots.
    assert {"Amazon Root CA 1", "Amazon Root CA 2", "Amazon Root CA 3",
            "Amazon Root CA 4"} <= names
    now = datetime.datetime.now(datetime.UTC)
    assert sum(cert.not_valid_after_utc > now for cert in _bundle()) >= 60


def test_the_dsn_verifies_the_server_against_the_shipped_bundle():
    parts = conninfo_to_dict(dsn_from_secret({**SECRET, "password": "pw"}))
    assert parts["sslmode"] == "verify-full"
    assert parts["sslrootcert"] == str(DATABASE_CA_BUNDLE)
    assert DATABASE_CA_BUNDLE.is_file()


@pytest.mark.parametrize("password", [
    "two words", "x host=evil.example.com", "it's \\ quoted' sslmode=disable", " ",
    "pw dbname=postgres user=postgres",
])
def test_a_password_cannot_change_where_or_how_the_connection_goes(password):
    parts = conninfo_to_dict(dsn_from_secret({**SECRET, "password": password}))
    assert parts == {"host": "crm-db.internal", "port": "5432", "dbname": "crm",
                     "user": "marketing_app", "password": password, "sslmode": "verify-full",
                     "sslrootcert": str(DATABASE_CA_BUNDLE)}


def test_a_server_without_tls_is_refused_not_used_in_plaintext():
    """A Postgres-speaking listener that declines TLS (answers the SSLRequest with "N"): with
    verify-full, libpq gives up instead of sending the password in the clear."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def decline_tls() -> None:
        conn, _ = listener.accept()
        with conn:
            requests.append(conn.recv(8))
            conn.sendall(b"N")
            requests.append(conn.recv(1024))  # whatever follows: must be nothing

    server = threading.Thread(target=decline_tls, daemon=True)
    server.start()
    dsn = dsn_from_secret({**SECRET, "host": "127.0.0.1", "port": listener.getsockname()[1],
                           "password": "never-in-clear"})
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        psycopg.connect(dsn, connect_timeout=5).close()
    server.join(10)
    listener.close()
    assert requests[0] == (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")  # SSLRequest
    assert b"never-in-clear" not in b"".join(requests[1:])
