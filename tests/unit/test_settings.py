import json
import subprocess
from pathlib import Path

import pytest

from ontheway.errors import ConfigurationError
from ontheway.settings import DEV_JWT_SECRET, Settings, load_settings
from ontheway.stack import LocalStack


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ONTHEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ONTHEWAY_STATE_DIR", str(tmp_path))


def test_the_development_secret_is_refused_outside_local_mode() -> None:
    with pytest.raises(ConfigurationError, match="development default"):
        Settings().jwt_key()


def test_the_development_secret_is_accepted_in_local_mode() -> None:
    assert Settings(local=True).jwt_key() == DEV_JWT_SECRET


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 16"):
        Settings(jwt_secret="short").jwt_key()


def test_a_missing_shard_dsn_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="ONTHEWAY_SHARD_DSNS"):
        Settings().dsn_for("americas")


def test_a_missing_redis_url_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="ONTHEWAY_REDIS_URL"):
        Settings().require_redis_url()


def test_falkordb_defaults_to_the_redis_server() -> None:
    assert Settings(redis_url="redis://h:1/0").require_falkordb_url() == "redis://h:1/0"


def test_an_invalid_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONTHEWAY_API_PORT", "not-a-port")
    with pytest.raises(ConfigurationError, match="ONTHEWAY_API_PORT"):
        load_settings()


def test_an_unknown_bus_kind_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONTHEWAY_BUS", "carrier-pigeon")
    with pytest.raises(ConfigurationError, match="ONTHEWAY_BUS"):
        load_settings()


def test_the_environment_overrides_the_stack_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "ontheway.env").write_text(
        'ONTHEWAY_REDIS_URL=redis://from-file:1/0\nONTHEWAY_SHARD_DSNS={"a": "postgresql://x"}\n'
    )
    assert load_settings().redis_url == "redis://from-file:1/0"
    assert load_settings().shard_dsns == {"a": "postgresql://x"}
    monkeypatch.setenv("ONTHEWAY_REDIS_URL", "redis://from-env:2/0")
    assert load_settings().redis_url == "redis://from-env:2/0"


def test_the_stack_env_file_reads_the_same_in_bash_and_in_the_settings(tmp_path: Path) -> None:
    stack = LocalStack.from_settings(Settings(state_dir=tmp_path), ["americas", "europe"])
    stack.write_env_file()
    settings = load_settings()
    assert set(settings.shard_dsns) == {"americas", "europe"}
    sourced = subprocess.run(
        ["bash", "-c", 'set -a; . "$1"; set +a; env -0', "bash", str(stack.env_file)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    shell = dict(v.split("=", 1) for v in sourced.stdout.split("\0") if v)
    assert json.loads(shell["ONTHEWAY_SHARD_DSNS"]) == settings.shard_dsns
    assert shell["ONTHEWAY_REDIS_URL"] == settings.redis_url
    assert shell["ONTHEWAY_FALKORDB_URL"] == settings.falkordb_url
    assert shell["ONTHEWAY_LOCAL"] == "true" and settings.local
    assert shell["ONTHEWAY_JWT_SECRET"] == settings.jwt_key()
    # Written again, the file keeps its secret, unquoted once and not quoted twice.
    stack.write_env_file()
    assert load_settings().jwt_key() == settings.jwt_key()


def test_an_env_file_written_before_values_were_quoted_keeps_its_secret(tmp_path: Path) -> None:
    (tmp_path / "ontheway.env").write_text("ONTHEWAY_JWT_SECRET=an-old-secret-of-32-characters\n")
    LocalStack.from_settings(Settings(state_dir=tmp_path), ["americas"]).write_env_file()
    assert load_settings().jwt_key() == "an-old-secret-of-32-characters"
