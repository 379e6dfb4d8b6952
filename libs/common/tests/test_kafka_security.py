"""Kafka TLS and SASL settings reach every client, and topics are replicated as configured."""

import secrets
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from amana_common.kafka import (
    KafkaConnection,
    admin_client,
    kafka_connection,
    manual_commit_consumer,
    reliable_producer,
)
from amana_common.settings import KafkaSettings, ServiceSettings, TopicReplication
from amana_common.topics import new_topic

STRONG_SECRET = secrets.token_urlsafe(48)
STRONG_DB = "postgresql+asyncpg://amana:Vx9-long-random-pw@db/amana_demo"


def service_settings(**values: Any) -> ServiceSettings:
    """Settings of a test environment (production wants secrets these tests do not need)."""
    return ServiceSettings(**({"environment": "test"} | values))


def certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.Certificate:
    now = datetime.now(UTC)
    issuer_name, issuer_key = issuer
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=subject == issuer_name, path_length=None), True)
        .sign(issuer_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA of the test's own and a client certificate it signed, as PEM files."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Amana Test CA", ca_key, ("Amana Test CA", ca_key))
    client = certificate("registry-worker", client_key, ("Amana Test CA", ca_key))
    files = {"ca": folder / "ca.pem", "cert": folder / "client.pem", "key": folder / "client.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(client.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        client_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def sasl_ssl(pki: dict[str, Path], **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": "kafka-1.internal:9094",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-256",
        "kafka_sasl_username": "registry",
        "kafka_sasl_password": "s3cr3t-scram",
        "kafka_ssl_ca_file": str(pki["ca"]),
        "kafka_ssl_cert_file": str(pki["cert"]),
        "kafka_ssl_key_file": str(pki["key"]),
    }
    return service_settings(**(values | overrides))


def client_settings(client: Any) -> dict[str, Any]:
    """What an aiokafka client will connect with (read from its connection factory)."""
    inner = getattr(client, "_client", None) or client.client
    return {
        "bootstrap": inner._bootstrap_servers,
        "protocol": inner._security_protocol,
        "ssl_context": inner._ssl_context,
        "mechanism": inner._sasl_mechanism,
        "username": inner._sasl_plain_username,
        "password": inner._sasl_plain_password,
    }


def test_sasl_ssl_builds_a_verifying_tls_context_from_the_ca_file_with_the_client_cert(
    pki: dict[str, Path],
) -> None:
    connection = kafka_connection(sasl_ssl(pki))

    context = connection.ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert "Amana Test CA" in str(context.get_ca_certs())
    assert len(context.get_ca_certs()) == 1, "only the CA file, not the system's CAs"
    assert connection.client_kwargs() == {
        "bootstrap_servers": "kafka-1.internal:9094",
        "security_protocol": "SASL_SSL",
        "ssl_context": context,
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "registry",
        "sasl_plain_password": "s3cr3t-scram",
    }


async def test_every_producer_consumer_and_admin_client_gets_the_same_security(
    pki: dict[str, Path],
) -> None:
    connection = kafka_connection(sasl_ssl(pki, kafka_sasl_mechanism="SCRAM-SHA-512"))
    clients = [
        reliable_producer(connection, "registry-outbox-relay"),
        manual_commit_consumer(connection, "registry-provider-projection"),
        admin_client(connection),
    ]

    for client in clients:
        assert client_settings(client) == {
            "bootstrap": "kafka-1.internal:9094",
            "protocol": "SASL_SSL",
            "ssl_context": connection.ssl_context,
            "mechanism": "SCRAM-SHA-512",
            "username": "registry",
            "password": "s3cr3t-scram",
        }


def test_ssl_alone_sends_no_credentials_and_plaintext_no_context(pki: dict[str, Path]) -> None:
    tls = kafka_connection(
        service_settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=str(pki["ca"]))
    )
    plain = kafka_connection(service_settings(kafka_bootstrap="127.0.0.1:9092"))

    assert tls.ssl_context is not None and tls.sasl_mechanism is None
    assert "sasl_plain_password" not in tls.client_kwargs()
    assert plain == KafkaConnection("127.0.0.1:9092")
    assert plain.client_kwargs() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_a_ca_file_that_is_not_there_fails_at_start_not_at_the_first_message(
    tmp_path: Path,
) -> None:
    settings = service_settings(
        kafka_security_protocol="SSL", kafka_ssl_ca_file=str(tmp_path / "missing.pem")
    )

    with pytest.raises(FileNotFoundError):
        kafka_connection(settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"},
            "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_ssl_cert_file": "/etc/kafka/client.pem"}, "go together"),
        ({"kafka_sasl_mechanism": "PLAIN"}, "kafka_sasl_mechanism"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        ({"kafka_replication_factor": 1, "kafka_min_insync_replicas": 2}, "cannot exceed"),
    ],
)
def test_inconsistent_kafka_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        service_settings(**overrides)


def test_the_settings_are_read_from_the_service_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    from amana_common.settings import service_config

    class DemoSettings(ServiceSettings):
        model_config = service_config("DEMO_")

    for name, value in {
        "DEMO_ENVIRONMENT": "test",
        "DEMO_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "DEMO_KAFKA_SASL_USERNAME": "demo",
        "DEMO_KAFKA_SASL_PASSWORD": "pw",
        "DEMO_KAFKA_REPLICATION_FACTOR": "3",
        "DEMO_KAFKA_MIN_INSYNC_REPLICAS": "2",
    }.items():
        monkeypatch.setenv(name, value)

    settings = DemoSettings()

    assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert kafka_connection(settings).sasl_username == "demo"
    assert settings.topic_replication() == TopicReplication(3, 2)


def test_empty_replication_variables_mean_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMANA_KAFKA_REPLICATION_FACTOR", "")
    monkeypatch.setenv("AMANA_KAFKA_MIN_INSYNC_REPLICAS", "")

    assert KafkaSettings().topic_replication() == TopicReplication(1, 1)


def test_the_topic_creator_reads_amana_kafka_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMANA_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("AMANA_KAFKA_REPLICATION_FACTOR", "3")

    settings = KafkaSettings()

    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.topic_replication() == TopicReplication(3, 2)


def test_replication_defaults_to_one_outside_production_and_three_in_it() -> None:
    assert service_settings().topic_replication() == TopicReplication(1, 1)
    production = ServiceSettings(
        environment="production", jwt_secret=STRONG_SECRET, database_url=STRONG_DB
    )
    assert production.topic_replication() == TopicReplication(3, 2)
    assert service_settings(kafka_replication_factor=2).topic_replication() == TopicReplication(
        2, 1
    )


def test_production_refuses_a_replication_factor_of_one() -> None:
    with pytest.raises(ValidationError, match="refuses a Kafka replication factor of 1"):
        ServiceSettings(
            environment="production",
            kafka_replication_factor=1,
            jwt_secret=STRONG_SECRET,
            database_url=STRONG_DB,
        )


def test_a_topic_is_created_with_its_replication_and_min_insync_replicas() -> None:
    topic = new_topic("registry.events", 6, TopicReplication(3, 2))

    assert (topic.name, topic.num_partitions, topic.replication_factor) == (
        "registry.events",
        6,
        3,
    )
    assert topic.topic_configs == {"min.insync.replicas": "2"}
