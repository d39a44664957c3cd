"""The ``redis+sentinel://`` and ``redis+cluster://`` URLs: what they name, what kombu and Celery
are given, what a cluster needs beside it, and errors that are one line and never show a password."""

from __future__ import annotations

import pytest

from coditect_tasks.cluster import ClusterUrl
from coditect_tasks.errors import ConfigError
from coditect_tasks.sentinel import SentinelUrl, celery_form
from coditect_tasks.settings import Settings, safe_url


def test_the_url_names_the_sentinels_the_service_the_database_and_both_passwords() -> None:
    url = SentinelUrl.parse("redis+sentinel://:p%2Fw@s1:26379,[::1]:26380/coditect/2?sentinel_password=sp")
    assert url == SentinelUrl((("s1", 26379), ("::1", 26380)), "coditect", "p/w", 2, "sp")
    assert url.kombu_url() == "sentinel://:p%2Fw@s1:26379/2;sentinel://:p%2Fw@::1:26380/2"
    assert url.transport_options() == {"master_name": "coditect", "sentinel_kwargs": {"password": "sp"}}
    plain = "redis://:pw@h:6379/0"
    assert celery_form(plain, broker=True) == (plain, {})
    assert celery_form("redis+sentinel://s:1/m", broker=True)[1] == {"master_name": "m", "ack_emulation": False}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://:secret@s1:26379", "no service name: end the URL with /<service>"),
        ("redis+sentinel://:sec/ret@s1:26379/m", "Sentinel 1 is not host:port (escape a '/' in the password as %2F)"),
        ("redis+sentinel://:secret@s1:26379,s2/m", "Sentinel 2 is not host:port"),
        ("redis+sentinel://:secret@s1:1/m/x", "the path must be /<service>[/<db>]"),
        ("redis+sentinel://:secret@s1:1/m?password=x", "unknown parameter(s) password"),
    ],
)
def test_a_bad_url_is_one_line_naming_the_variable_and_never_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"CODITECT_BROKER_URL": url})
    text = str(info.value)
    assert text.startswith("CODITECT_BROKER_URL: ") and message in text and "\n" not in text
    assert "secret" not in text and "ret@" not in text


def test_passwords_are_masked_in_messages() -> None:
    assert safe_url("redis+sentinel://:a/b@s1:1,s2:2/m?sentinel_password=c") == (
        "redis+sentinel://:**@s1:1,s2:2/m?sentinel_password=**"
    )


def test_a_sentinel_url_waits_for_one_replica_unless_told_otherwise() -> None:
    sentinel = {"CODITECT_BROKER_URL": "redis+sentinel://s1:26379/m"}
    assert Settings.from_env(sentinel).min_replicas == 1
    assert Settings.from_env({**sentinel, "CODITECT_REDIS_MIN_REPLICAS": "0"}).min_replicas == 0
    assert Settings.from_env({"CODITECT_BROKER_URL": "redis://h:6379/0"}).min_replicas == 0


def test_a_cluster_url_names_its_nodes_user_password_and_tls() -> None:
    assert ClusterUrl.parse("redis+cluster://n1:7000,[::1]:7001") == ClusterUrl((("n1", 7000), ("::1", 7001)))
    assert ClusterUrl.parse("rediss+cluster://app:p%2Fw@n1:7000") == ClusterUrl((("n1", 7000),), "app", "p/w", True)
    assert safe_url("redis+cluster://:a/b@n1:1,n2:2") == "redis+cluster://:**@n1:1,n2:2"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://:secret@n1:7000,n2", "node 2 is not host:port"),
        ("redis+cluster://:secret@n1:7000/0", "a cluster URL ends after its nodes"),
        ("redis+cluster://:secret@n1:7000?ssl=1", "a cluster URL ends after its nodes"),
    ],
)
def test_a_bad_cluster_url_is_one_line_naming_the_variable_and_never_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"CODITECT_REDIS_URL": url, "CODITECT_BROKER_URL": "amqp://h//"})
    text = str(info.value)
    assert text.startswith("CODITECT_REDIS_URL: ") and message in text and "\n" not in text
    assert "secret" not in text


def test_a_cluster_holds_run_state_only_with_a_broker_of_its_own() -> None:
    cluster = "redis+cluster://n1:7000"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"CODITECT_REDIS_URL": cluster})
    assert str(info.value).startswith("CODITECT_BROKER_URL: required with a Redis Cluster")
    for variable in ("CODITECT_BROKER_URL", "CODITECT_RESULT_BACKEND"):  # kombu and Celery have no cluster transport
        with pytest.raises(ConfigError, match=f"^{variable}: unsupported scheme 'redis\\+cluster'"):
            Settings.from_env({variable: cluster, "CODITECT_REDIS_URL": cluster})
    beside_redis = Settings.from_env({"CODITECT_REDIS_URL": cluster, "CODITECT_BROKER_URL": "redis://b:6379/0"})
    assert beside_redis.outbox and beside_redis.backend_url is None and beside_redis.min_replicas == 1
    beside_rabbit = Settings.from_env({"CODITECT_REDIS_URL": cluster, "CODITECT_BROKER_URL": "amqp://b//"})
    assert beside_rabbit.outbox and beside_rabbit.state_url == cluster
    one_redis = Settings.from_env({"CODITECT_BROKER_URL": "redis://b:6379/0"})
    assert not one_redis.outbox and one_redis.backend_url == "redis://b:6379/0"


def test_one_redis_spelt_two_ways_is_one_redis_for_the_outbox() -> None:
    same = Settings.from_env(
        {"CODITECT_BROKER_URL": "redis://:pw@Cache:6379/0", "CODITECT_REDIS_URL": "redis://:pw@cache"}
    )
    assert not same.outbox  # the engine's scripts push straight onto the broker's lists
    other = Settings.from_env(
        {"CODITECT_BROKER_URL": "redis://cache:6379/0", "CODITECT_REDIS_URL": "redis://cache:6379/1"}
    )
    assert other.outbox  # another database: node messages go through the outbox
