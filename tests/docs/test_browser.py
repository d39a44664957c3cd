"""The built pages in a real browser (Debian's chromium through Playwright): the landing page, a
tutorial page, a reference page and the architecture page render whole, their images and the
diagram load, and nothing overflows the page sideways. Screenshots go to a temporary folder, or
to ``$CODITECT_DOCS_SCREENSHOTS`` to look at them; never into the repository."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from coditect_docs import inventory

import coditect_tasks
from tests.conftest import missing

from .conftest import Site

PAGES = ["index.html", "tutorial/first-dag.html", "reference/settings.html", "explanation/architecture.html"]


def chromium() -> str:
    return shutil.which("chromium") or missing("Debian's chromium is not installed (apt-get install chromium)")


def test_the_pages_render_in_a_browser(site: Site, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("CODITECT_DOCS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
            for name in PAGES:
                page.goto((site.html / name).as_uri())
                page.wait_for_load_state("load")
                broken = page.evaluate(
                    "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
                )
                problems += [f"{name}: image did not load: {src}" for src in broken]
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                if overflow > 0:
                    problems.append(f"{name}: {overflow} px wider than the window")
                page.screenshot(path=str(shots / f"{name.replace('/', '-')}.png"), full_page=False)
            assert coditect_tasks.__version__ in page.title()
            page.goto((site.html / "explanation/architecture.html").as_uri())
            diagram = page.locator("div.graphviz object, div.graphviz img, div.graphviz svg").first
            box = diagram.bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 150, box
            page.goto((site.html / "reference/settings.html").as_uri())
            rows = page.locator("article table tbody tr").count()
            assert rows == len(inventory.setting_names())
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
