"""The site builds with no warning, shows everything the code has, and its links lead somewhere."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from coditect_docs import inventory, links, metrics_ref, settings_ref

import coditect_tasks
from coditect_tasks.settings import Settings, _whole, setting

from .conftest import Site


def test_the_site_builds_without_a_warning(site: Site) -> None:
    """``-W --keep-going -n``: a broken reference, a missing page or a nitpick fails the build."""
    print(f"docs built in {site.seconds:.1f} s")
    assert site.returncode == 0, site.log[-4000:]
    assert "WARNING" not in site.log and "ERROR" not in site.log, site.log[-4000:]


def test_every_name_the_code_has_appears_in_the_site(site: Site) -> None:
    names = inventory.expected()
    assert all(names.values()), f"an inventory came back empty: {names}"
    assert inventory.missing(site.html, names) == {}


def test_a_setting_the_site_lacks_fails_the_check(site: Site) -> None:
    """A ``Settings`` with one more field: the check names it against the built site, and the
    generator renders it (marked undocumented) so the next build would show it."""

    @dataclasses.dataclass(frozen=True)
    class Extended(Settings):
        dummy_knob: int = setting(3, _whole())

    names = inventory.expected(settings=Extended)
    assert inventory.missing(site.html, names) == {"settings": ["CODITECT_DUMMY_KNOB"]}
    row = next(line for line in settings_ref.render(Extended).splitlines() if "CODITECT_DUMMY_KNOB" in line)
    assert "(undocumented)" in row and "`3`" in row


def test_internal_links_lead_somewhere(site: Site) -> None:
    assert links.broken(site.html) == []


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        '<a id="top" href="gone.html">x</a> <a href="#nowhere">y</a> <a href="#top">z</a>'
    )
    assert links.broken(tmp_path) == ["index.html: gone.html", "index.html: #nowhere (no such anchor)"]


def test_the_site_shows_the_version(site: Site) -> None:
    text = inventory.page_text(site.html / "index.html")
    assert f"coditect-tasks {coditect_tasks.__version__}" in text
    assert f"version {coditect_tasks.__version__}" in text


def test_the_changelog_keeps_a_changelog(site: Site) -> None:
    text = (Path(__file__).resolve().parents[2] / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text and f"## [{coditect_tasks.__version__}]" in text
    assert "Keep a Changelog" in inventory.page_text(site.html / "changelog.html")


@pytest.mark.parametrize("kind", sorted(inventory.PAGES))
def test_the_check_reads_each_kind_from_its_page(site: Site, kind: str) -> None:
    """A name that is on no page is reported for every kind (the check is not vacuous)."""
    assert inventory.missing(site.html, {kind: ["no_such_name_anywhere"]}) == {kind: ["no_such_name_anywhere"]}


def test_the_docs_command_refuses_a_folder_without_a_site(tmp_path: Path) -> None:
    from coditect_tasks.cli import main

    assert main(["docs", "--no-serve", "--source", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_a_metric_family_in_any_module_is_found() -> None:
    source = 'def collect():\n    yield CounterMetricFamily("coditect_new_things", "New things, by kind.", labels=["kind"])\n'
    assert metrics_ref.metric_docs([source]) == [
        metrics_ref.MetricDoc("coditect_new_things_total", "counter", "New things, by kind.", ("kind",))
    ]
