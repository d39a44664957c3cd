from __future__ import annotations

from pathlib import Path

import pytest

from coditect_tasks.embedded import write_stack
from coditect_tasks.errors import ConfigError, EmbeddedStackError, NoBrokerError
from coditect_tasks.settings import DEFAULT_AGENT_MODULES, Settings, safe_url


def test_defaults_mean_the_embedded_stack() -> None:
    settings = Settings.from_env({})
    assert settings.embedded
    assert settings.home == Path(".coditect")
    assert settings.agent_modules == DEFAULT_AGENT_MODULES
    assert settings.log_level == "INFO"
    assert settings.history_url.startswith("sqlite:///") and settings.history_url.endswith("history.db")
    with pytest.raises(NoBrokerError):
        settings.require_broker()


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "CODITECT_HOME": "/tmp/x",
            "CODITECT_BROKER_URL": "amqp://guest:secret@rabbit:5672//",
            "CODITECT_RESULT_BACKEND": "redis://cache:6379/1",
            "CODITECT_REDIS_URL": "redis://state:6379/2",
            "CODITECT_DATABASE_URL": "postgresql://u:p@db/coditect",
            "CODITECT_AGENT_MODULES": "a.b, c ,",
            "CODITECT_LOG_LEVEL": "debug",
            "CODITECT_CONNECT_TIMEOUT": "2.5",
            "CODITECT_EMBEDDED_FSYNC": "everysec",
            "CODITECT_SHUTDOWN_GRACE": "0",
            "CODITECT_HEALTH_FILE": "/tmp/x/health.json",
        }
    )
    assert not settings.embedded
    assert settings.home == Path("/tmp/x")
    assert settings.backend_url == "redis://cache:6379/1"
    assert settings.state_url == "redis://state:6379/2"
    assert settings.history_url == "postgresql://u:p@db/coditect"
    assert settings.agent_modules == ("a.b", "c")
    assert settings.log_level == "DEBUG"
    assert settings.connect_timeout == 2.5
    assert settings.embedded_fsync == "everysec"
    assert settings.shutdown_grace == 0
    assert settings.health_file == Path("/tmp/x/health.json")


def test_redis_broker_serves_every_redis_role() -> None:
    settings = Settings.from_env({"CODITECT_BROKER_URL": "redis://h:6379/0"})
    assert settings.state_url == settings.backend_url == "redis://h:6379/0"


def test_rabbitmq_without_a_state_redis_is_a_clear_error() -> None:
    settings = Settings.from_env({"CODITECT_BROKER_URL": "amqp://h//"})
    with pytest.raises(ConfigError, match="CODITECT_REDIS_URL"):
        _ = settings.state_url


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CODITECT_BROKER_URL", "foo://host", "unsupported scheme 'foo'"),
        ("CODITECT_BROKER_URL", "localhost:6379", "unsupported scheme"),
        ("CODITECT_BROKER_URL", "redis://host:notaport/0", "malformed URL"),
        ("CODITECT_BROKER_URL", "redis:///0", "no host"),
        ("CODITECT_RESULT_BACKEND", "amqp://h//", "unsupported scheme 'amqp'"),
        ("CODITECT_DATABASE_URL", "not a url", "malformed SQLAlchemy URL"),
        ("CODITECT_LOG_LEVEL", "loud", "not one of"),
        ("CODITECT_CONNECT_TIMEOUT", "soon", "not a number"),
        ("CODITECT_MAX_NODES", "0", "not a positive whole number"),
        ("CODITECT_MAX_DAG_BYTES", "1e6", "not a positive whole number"),
        ("CODITECT_MAX_PARAMS_BYTES", "-1", "not a positive whole number"),
        ("CODITECT_MAX_FOREACH_ITEMS", "many", "not a positive whole number"),
        ("CODITECT_EMBEDDED_FSYNC", "never", "not one of always, everysec"),
        ("CODITECT_SHUTDOWN_GRACE", "-1", "not a whole number ≥ 0"),
    ],
)
def test_malformed_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert str(info.value).startswith(f"{name}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_passwords_never_reach_messages() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"CODITECT_BROKER_URL": "foo://user:hunter2@host/0"})
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in safe_url("redis://:hunter2@127.0.0.1:1/0")


def test_environment_round_trips(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"CODITECT_HOME": str(tmp_path), "CODITECT_BROKER_URL": "redis://h/0", "CODITECT_LOG_LEVEL": "ERROR"}
    )
    assert Settings.from_env(settings.environment()) == settings


def test_with_broker_points_every_role_at_the_embedded_redis() -> None:
    settings = Settings.from_env({}).with_broker("redis://:pw@127.0.0.1:7000/0")
    assert settings.require_broker() == settings.state_url == settings.backend_url


def test_the_stack_file_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    (tmp_path / "stack.json").symlink_to(target)
    with pytest.raises(EmbeddedStackError, match=r"stack\.json is a symbolic link"):
        write_stack(tmp_path, "redis://:secret@127.0.0.1:1/0")
    assert target.read_text() == "{}"
    (tmp_path / "stack.json").unlink()
    write_stack(tmp_path, "redis://:secret@127.0.0.1:1/0")
    assert oct((tmp_path / "stack.json").stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".stack")] == []
