"""The UI in a real browser (Debian's chromium, headless, through Playwright): the token, the Workspace page, running
a step from its generated form, and the Jobs page with its live progress and Cancel."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi")


def test_without_the_token_the_browser_gets_nothing(browser, live_ui):
    context = browser.new_context()
    pg = context.new_page()
    response = pg.goto(live_ui.base + "/")
    assert response.status == 403 and "open the address" in pg.content()
    pg.goto(live_ui.url)
    assert "token" not in pg.url  # the token left the address bar for a cookie
    pg.wait_for_selector("#overview .card")
    context.close()


def test_the_workspace_page_shows_the_counts_and_the_next_step(page):
    page.wait_for_selector("#overview .card")
    cards = page.locator("#overview .card")
    assert "30" in cards.nth(0).inner_text() and "30" in cards.nth(1).inner_text()
    assert "train" in page.locator("#next").inner_text()
    # the forms are generated from the declarations: extract's --size is there with its help
    page.click("#step-tabs button[data-step=extract]")
    assert page.locator("#f-size").is_visible()
    from facelab.stages.extract import OPTIONS

    size = next(o for o in OPTIONS if o.name == "size")
    assert page.locator("label[for=f-size]").get_attribute("title") == size.help


def test_run_a_step_from_its_form_and_watch_it_on_the_jobs_page(page, live_ui, tmp_path):
    page.wait_for_selector("#step-tabs button")
    page.click("#step-tabs button[data-step=sort]")
    page.check("input[name=side][value=dst]")
    page.select_option("#f-by", "hist")
    page.click("#step-form button[type=submit]")
    page.wait_for_selector(".toast:not([hidden])")
    assert "started: sort dst" in page.locator("#toast").inner_text()
    page.click("nav a[data-page=jobs]")
    page.wait_for_selector(".job .state.done", timeout=60_000)
    assert re.search(r"^sort dst by hist: faces: 30", page.locator(".job .summary").first.inner_text())
    page.screenshot(path=str(tmp_path / "jobs.png"))


def test_cancel_a_running_job_from_the_jobs_page(page, live_ui, monkeypatch):
    import threading

    from facelab.ui import steps

    hold = threading.Event()

    def slow(ws, side, values, job, log, marker):
        from facelab.progress import track

        for i in track(range(200), 200, f"slow {side}"):
            log(f"item {i}")
            hold.wait(0.05)

    monkeypatch.setitem(steps.STEPS, "sort", steps.Step("sort", "Sort faces", ("src", "dst"), slow))
    page.goto(live_ui.base + "/jobs")
    page.evaluate("""() => fetch('/api/steps/sort', {method: 'POST', headers: {'content-type': 'application/json'},
                                                  body: JSON.stringify({side: 'src', values: {}})})""")
    page.wait_for_selector(".job button[data-cancel]")
    page.wait_for_function("() => document.querySelector('.job pre.log') && document.querySelector('.job pre.log').textContent.includes('item 3')")
    page.click(".job button[data-cancel]")
    page.wait_for_selector(".job .state.cancelled", timeout=20_000)
    assert "item 199" not in page.inner_text(".job pre.log")  # stopped where the cancel came, not at the end
    hold.set()
