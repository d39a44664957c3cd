"""The load plan's arithmetic and the reading of Locust's CSV: pure logic, no Locust process."""

from __future__ import annotations

from pathlib import Path

import pytest

from coditect_tasks.errors import ConfigError, LoadReportError
from coditect_tasks.load.report import read_failures, read_stats
from coditect_tasks.load.scenario import SCENARIOS, default_dag, scenario


def test_each_scenario_holds_the_plans_rate_or_concurrency() -> None:
    assert SCENARIOS["steady"].tick(0) == (10, 10) and SCENARIOS["steady"].tick(599.9) == (10, 10)
    assert SCENARIOS["steady"].tick(600) is None
    spike = SCENARIOS["spike"]
    assert [spike.tick(t)[0] for t in (0, 59, 60, 119, 120, 179)] == [10, 10, 100, 100, 10, 10]  # type: ignore[index]
    assert spike.tick(180) is None
    assert SCENARIOS["stress"].tick(60) == (1000, 100) and SCENARIOS["stress"].pacing == 0
    assert SCENARIOS["soak"].tick(3599) == (50, 50) and SCENARIOS["soak"].seconds == 3600


def test_scale_shrinks_durations_and_only_the_stress_scenarios_users() -> None:
    spike = scenario("spike", 0.1)
    assert [s.until for s in spike.stages] == [6, 12, 18] and [s.users for s in spike.stages] == [10, 100, 10]
    stress = scenario("stress", 0.05)
    assert stress.seconds == 6 and stress.stages[0].users == 50
    assert scenario("stress", 0.0001).stages[0].users == 1


@pytest.mark.parametrize("scale", [0, -1, 1.5])
def test_a_scale_outside_zero_to_one_is_refused(scale: float) -> None:
    with pytest.raises(ConfigError, match="--scale"):
        scenario("steady", scale)


def test_an_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="steady, spike, stress, soak"):
        scenario("surge")


def test_the_default_dag_fans_out_and_in() -> None:
    dag = default_dag()
    assert dag.nodes["join"].after == ("left", "right") and dag.nodes["left"].after == ("plan",)


HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
    "99.99%,100%"
)


def test_figures_come_from_locusts_stats_csv(tmp_path: Path) -> None:
    (tmp_path / "locust_stats.csv").write_text(
        "\n".join(
            [
                HEADER,
                "dispatch,steady/diamond,120,0,35,35.7,4.8,80.971,0.0,10.709,0.0,35,43,49,53,66,70,73,80,81,81,81",
                "run,steady/diamond,120,2,170,169.9,49.8,282.919,4.0,10.709,0.1,170,200,210,220,240,250,270,275,280,280,280",
                ",Aggregated,240,2,72,102,4.8,282.9,2.0,21.4,0.1,72,140,170,190,220,240,250,270,280,280,280",
            ]
        )
    )
    (tmp_path / "locust_failures.csv").write_text(
        "Method,Name,Error,Occurrences\nrun,steady/diamond,\"RunFailed('run failed: x')\",2\n"
    )
    figures = read_stats(tmp_path / "locust")
    assert set(figures) == {"run", "dispatch"}
    assert (figures["run"].requests, figures["run"].failures, figures["run"].p95, figures["run"].p99) == (
        120,
        2,
        250,
        275,
    )
    assert figures["dispatch"].per_second == 10.71 and figures["dispatch"].max == 81.0
    assert read_failures(tmp_path / "locust") == [{"error": "RunFailed('run failed: x')", "occurrences": 2}]


def test_a_missing_report_says_where_to_look(tmp_path: Path) -> None:
    with pytest.raises(LoadReportError, match=r"locust\.log"):
        read_stats(tmp_path / "locust")


def test_a_rate_sets_users_and_pacing_so_runs_arrive_at_that_rate() -> None:
    plan = scenario("steady", 0.1, rate=12.5)
    users, _ = plan.tick(0) or (0, 0.0)
    assert (users, plan.rate, plan.seconds) == (13, 12.5, 60)
    assert users / plan.pacing == pytest.approx(12.5)


@pytest.mark.parametrize(("name", "rate"), [("spike", 5), ("stress", 5), ("steady", 0), ("steady", -2)])
def test_a_rate_is_refused_where_it_has_no_meaning(name: str, rate: float) -> None:
    with pytest.raises(ConfigError, match="--rate"):
        scenario(name, rate=rate)
