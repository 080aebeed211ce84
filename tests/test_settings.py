"""Settings: production refuses unsafe defaults; lists read from the environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from payload_keys import PAYLOAD_KEYS
from pydantic import ValidationError

from settings import DEFAULT_JWT_SECRET, Settings

ROOT = Path(__file__).resolve().parent.parent


def test_production_refuses_the_default_jwt_secret() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET must be set"):
        Settings(_env_file=None, environment="production")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="JWT_SECRET must be set"):
        Settings(_env_file=None, environment="production", jwt_secret="short")  # type: ignore[call-arg]


def test_production_starts_with_a_real_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", "x" * 48)
    monkeypatch.setenv("PAYLOAD_KEYS", PAYLOAD_KEYS)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.jwt_secret.get_secret_value() != DEFAULT_JWT_SECRET
    assert settings.effective_allow_list == frozenset()  # no rate-limit exemptions in production


def test_production_refuses_to_start_without_payload_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "x" * 48)
    with pytest.raises(ValidationError, match="PAYLOAD_KEYS must be set"):
        Settings(_env_file=None, environment="production")  # type: ignore[call-arg]


def test_development_allows_localhost_and_lists_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://statex.cz, https://www.statex.cz")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.cors_origins == ["https://statex.cz", "https://www.statex.cz"]
    assert "127.0.0.1" in settings.effective_allow_list


def test_database_url_defaults_to_sqlite_and_accepts_plain_postgres_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).effective_database_url.startswith("sqlite+aiosqlite:///")  # type: ignore[call-arg]
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db:5432/statex")
    assert Settings(_env_file=None).effective_database_url == "postgresql+psycopg://app@db:5432/statex"  # type: ignore[call-arg]


def test_secrets_come_from_files_in_secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As compose and Kubernetes mount them: one file per setting, named after it, its trailing newline dropped;
    an empty file is no value; a variable in the environment wins over its file; without SECRETS_DIR no file
    is read."""
    (tmp_path / "jwt_secret").write_text("j" * 48 + "\n")
    (tmp_path / "payload_keys").write_text(PAYLOAD_KEYS + "\n")
    (tmp_path / "codec_operator_token").write_text("from-the-file\n")
    (tmp_path / "stripe_secret_key").write_text("\n")  # an optional secret compose mounts, left empty
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("CODEC_OPERATOR_TOKEN", "from-the-environment")
    settings = Settings(_env_file=None, environment="production")  # type: ignore[call-arg]
    assert settings.jwt_secret.get_secret_value() == "j" * 48
    assert settings.payload_keys is not None and settings.payload_keys.get_secret_value() == PAYLOAD_KEYS
    assert settings.codec_operator_token is not None
    assert settings.codec_operator_token.get_secret_value() == "from-the-environment"
    assert settings.stripe_secret_key is None

    monkeypatch.delenv("SECRETS_DIR")
    assert Settings(_env_file=None).jwt_secret.get_secret_value() == DEFAULT_JWT_SECRET  # type: ignore[call-arg]


def test_database_password_from_its_own_file_goes_into_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The URL can stay in plain configuration while its password is a secret file; characters that mean
    something in a URL are quoted."""
    (tmp_path / "database_password").write_text("p@ss:w/rd\n")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgresql://statex@postgres:5432/statex")
    assert Settings(_env_file=None).effective_database_url == (  # type: ignore[call-arg]
        "postgresql+psycopg://statex:p%40ss%3Aw%2Frd@postgres:5432/statex"
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://statex:inline@postgres:5432/statex")
    assert Settings(_env_file=None).effective_database_url == (  # type: ignore[call-arg]
        "postgresql+psycopg://statex:p%40ss%3Aw%2Frd@postgres:5432/statex"
    )


def test_env_example_documents_every_setting() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_public_links_follow_the_api_port_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emailed links, download links and the Temporal UI's codec endpoint start with PUBLIC_API_URL; an API moved
    to another port keeps them working without a second setting."""
    assert Settings(_env_file=None).public_api_url == "http://127.0.0.1:8000"  # type: ignore[call-arg]
    monkeypatch.setenv("API_PORT", "18123")
    assert Settings(_env_file=None).public_api_url == "http://127.0.0.1:18123"  # type: ignore[call-arg]
    monkeypatch.setenv("API_HOST", "0.0.0.0")  # every interface: this machine reaches it on loopback
    assert Settings(_env_file=None).public_api_url == "http://127.0.0.1:18123"  # type: ignore[call-arg]
    monkeypatch.setenv("API_HOST", "::1")
    assert Settings(_env_file=None).public_api_url == "http://[::1]:18123"  # type: ignore[call-arg]
    monkeypatch.setenv("PUBLIC_API_URL", "https://api.statex.example")  # behind a proxy: the public address
    assert Settings(_env_file=None).public_api_url == "https://api.statex.example"  # type: ignore[call-arg]
    monkeypatch.setenv("PUBLIC_API_URL", "")  # empty, as a compose file passes an unset variable: unset
    assert Settings(_env_file=None).public_api_url == "http://[::1]:18123"  # type: ignore[call-arg]
