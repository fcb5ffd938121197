"""Secrets come from the environment only: none is checked in, Settings reads
the API token and the SASL password from nowhere else, and neither shows up
in a repr, the --help text, Faust's credentials or an error message. The API
token is compared in constant time."""

from __future__ import annotations

import argparse
import hmac
import re
import secrets
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest

from nudge.policy.config import ConfigError
from nudge.streams.settings import Settings, environment_reference

ROOT = Path(__file__).resolve().parents[2]

SECRET_ENV = ("NUDGE_API_TOKEN", "KAFKA_SASL_PASSWORD")
KAFKA_ENV = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
)

# -- the repository holds no secret ---------------------------------------------------

#: Unmistakable credential formats: any hit is a finding.
CREDENTIAL_FORMATS = {
    "private key": re.compile(r"-{5}BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-{5}"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*[A-Za-z0-9/+]{30,}"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\."),
    "bearer token": re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]{16,}"),
}
#: `password = "..."`, `api_key: '...'`, `password="..."` (JAAS): a quoted literal.
QUOTED_ASSIGNMENT = re.compile(
    r"(?i)[\w.-]*(?:password|passwd|secret|token|api_?key|credential)[\w.-]*[\"']?"
    r"\s*[:=]\s*[\"']([^\"'\s]{4,})[\"']"
)
#: `KAFKA_SASL_PASSWORD=...` in shell, env files, YAML and docs (unquoted value).
ENV_ASSIGNMENT = re.compile(
    r"(?<![\w{$])[A-Z][A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY)[A-Z0-9_]*"
    r"\s*[=:]\s*[\"']?([^\s\"'$`({<]{4,})"
)
#: A value that says it is not a real secret: a test placeholder, or a template
#: (`{token}`, `${VAR}`, `<...>`) filled from the environment at run time.
PLACEHOLDER = re.compile(
    r"(?i)test|example|wrong|placeholder|changeme|dummy|fake|sample|token|secret|password|"
    r"[{}$<>]|^x+$|^\*+$"
)
PYTHON_LIKE = {".py", ".pyi"}
BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".skops", ".parquet", ".gz", ".zip", ".jar"}


def repository_files() -> list[Path]:
    """Tracked files, plus new ones not ignored: a secret about to be committed counts."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [ROOT / name for name in sorted(set(listed.split("\0"))) if name]


def findings_in(text: str, suffix: str) -> list[str]:
    """What in `text` looks like a secret (rule: excerpt)."""
    found = [
        f"{rule}: {match.group(0)[:40]}"
        for rule, pattern in CREDENTIAL_FORMATS.items()
        for match in pattern.finditer(text)
    ]
    patterns = [QUOTED_ASSIGNMENT]
    if suffix not in PYTHON_LIKE:  # in Python an unquoted value is code, not a literal
        patterns.append(ENV_ASSIGNMENT)
    for pattern in patterns:
        for match in pattern.finditer(text):
            if not PLACEHOLDER.search(match.group(1)):
                found.append(f"secret literal: {match.group(0)[:60]}")
    return found


def test_the_scanner_finds_what_it_looks_for() -> None:
    """Built by concatenation, so this file itself holds no hit."""
    value = secrets.token_urlsafe(18)
    samples = {
        "-----BEGIN " + "RSA PRIVATE KEY-----": ".txt",
        "AKIA" + "Q" * 16: ".py",
        "pass" + f'word = "{value}"': ".py",
        "db_" + f"password: '{value}'": ".yml",
        "KAFKA_SASL_" + f"PASSWORD={value}": ".md",
        "Authorization: " + f"Bearer {value}": ".md",
        "user_nudge=" + '"x" pass' + f'word="{value}";': ".properties",
    }
    for sample, suffix in samples.items():
        assert findings_in(sample, suffix), sample
    placeholders = {
        "TOKEN = " + '"metrics-test-token"': ".py",
        "pass" + 'word="{broker_password}"': ".py",
        "NUDGE_API_" + "TOKEN: ${NUDGE_API_TOKEN:?set NUDGE_API_TOKEN}": ".yml",
        "Authorization: " + "Bearer <NUDGE_API_TOKEN>": ".md",
        "KAFKA_SASL_" + 'PASSWORD="$(cat /run/secrets/kafka)"': ".md",
    }
    for sample, suffix in placeholders.items():
        assert not findings_in(sample, suffix), sample


def test_no_secret_is_checked_in() -> None:
    findings = []
    for path in repository_files():
        if path.suffix.lower() in BINARY_SUFFIXES or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        for finding in findings_in(data.decode(errors="replace"), path.suffix.lower()):
            findings.append(f"{path.relative_to(ROOT)}: {finding}")
    assert not findings, "\n".join(findings)


# -- Settings --------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*SECRET_ENV, *KAFKA_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_secrets_are_read_from_the_environment_and_nowhere_else(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A dotenv file in the working directory must not count: only the environment does.
    (tmp_path / ".env").write_text("NUDGE_API_TOKEN=from-a-file\nKAFKA_SASL_PASSWORD=from-a-file\n")
    clean_env.chdir(tmp_path)
    settings = Settings()
    assert settings.api_token is None
    assert settings.sasl_password is None
    secret_fields = {f.name for f in fields(Settings) if f.metadata["env"] in SECRET_ENV}
    assert secret_fields == {"api_token", "sasl_password"}
    token, password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    clean_env.setenv("NUDGE_API_TOKEN", token)
    clean_env.setenv("KAFKA_SASL_PASSWORD", password)
    settings = Settings()
    assert (settings.api_token, settings.sasl_password) == (token, password)
    clean_env.setenv("NUDGE_API_TOKEN", "")
    assert Settings().api_token is None, "an empty token must not enable the API"


def sasl_env(monkeypatch: pytest.MonkeyPatch, protocol: str = "SASL_PLAINTEXT") -> tuple[str, str]:
    token, password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    monkeypatch.setenv("NUDGE_API_TOKEN", token)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "nudge")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", password)
    return token, password


def test_secrets_never_show_in_repr_help_or_faust_credentials(
    clean_env: pytest.MonkeyPatch,
) -> None:
    from nudge.cli.commands.worker import _environment_help
    from nudge.streams.app import faust_credentials

    token, password = sasl_env(clean_env)
    settings = Settings()
    shown = {
        "repr": repr(settings),
        "str": str(settings),
        "environment reference": repr(environment_reference()),
        "nudge worker --help": _environment_help(),
        "faust credentials": repr(faust_credentials(settings)),
    }
    for where, text in shown.items():
        assert token not in text and password not in text, where
    assert "nudge" in shown["faust credentials"], "the user name is not a secret"


def test_sasl_settings_reach_both_client_libraries(clean_env: pytest.MonkeyPatch) -> None:
    """kafka-python (topics, lag, CLI) and aiokafka (Faust) get the same credentials."""
    import faust

    from nudge.cli import connection
    from nudge.streams.app import faust_credentials

    _, password = sasl_env(clean_env, "SASL_SSL")
    settings = Settings()
    expected = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "nudge",
        "sasl_plain_password": password,
    }
    assert settings.kafka_security() == expected
    assert connection.resolve(argparse.Namespace(bootstrap=None, prefix=None))[2] == expected
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("nudge", password)
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.ssl_context is not None, "SASL_SSL must verify the broker over TLS"
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    settings = Settings()
    assert settings.kafka_security() == {"security_protocol": "SSL"}
    assert isinstance(faust_credentials(settings), faust.SSLCredentials)
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    assert faust_credentials(Settings()) is None


def test_sasl_without_credentials_is_refused_at_start(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("KAFKA_SASL_USERNAME", "nudge")
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD"):
        Settings()
    clean_env.setenv("KAFKA_SASL_PASSWORD", secrets.token_urlsafe(8))
    clean_env.setenv("KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(ConfigError, match="KAFKA_SASL_MECHANISM"):
        Settings()


# -- the API token check -----------------------------------------------------------------


class FakeView:
    def json(self, value: dict, status: int = 200) -> tuple[int, dict]:
        return status, value


class FakeRequest:
    def __init__(self, authorization: str | None) -> None:
        self.headers = {} if authorization is None else {"Authorization": authorization}


def test_api_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from nudge.streams import views

    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(views.hmac, "compare_digest", spy)
    token = secrets.token_urlsafe(16)

    def status(header: str | None, configured: str | None = token) -> int | None:
        denied = views.auth_error(FakeView(), FakeRequest(header), configured)  # type: ignore[arg-type]
        return None if denied is None else denied[0]

    assert status(None) == 401
    assert status(f"Basic {token}") == 401
    assert status(f"Bearer {token[:-1]}") == 403
    assert status(f"Bearer {token}x") == 403
    assert status(f"Bearer {token}") is None
    assert compared[-1] == (token.encode(), token.encode())
    assert len(compared) == 3, "every bearer token goes through hmac.compare_digest"
    # No NUDGE_API_TOKEN: the API is closed, not open.
    assert status(None, configured=None) == 401
    assert status("Bearer anything", configured=None) == 403
    assert status(f"Bearer {token}", configured=None) == 403
