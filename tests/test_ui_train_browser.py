"""The Training page in a real browser (Debian's chromium, headless, through Playwright): start a training job from
the page, watch the iteration and the loss graph, close the page and find the job still running, refresh the
preview with P (pressed on a non-Latin layout: the key is matched by its position, event.code), switch the loss
range with L, and Stop: the model is saved at the job's last iteration."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")


def press(page, code: str, key: str) -> None:
    """A keydown as a keyboard of another layout sends it: ``code`` is the key's position, ``key`` its character."""
    page.evaluate("([code, key]) => document.body.dispatchEvent(new KeyboardEvent('keydown', {code, key, bubbles: true}))",
                  [code, key])


def iteration(page) -> int:
    return int(page.locator("#st-iter").inner_text().replace(",", "") or 0)


def test_train_from_the_page_watch_it_refresh_the_preview_and_stop_it_saved(page, live_ui, tmp_path):
    page.goto(live_ui.base + "/train")
    page.wait_for_selector("#train-form [data-kind]")
    assert page.locator("#model-pick").input_value() == "\u0000new"  # no model yet: a new one
    page.fill("#f-batch_size", "2")
    page.fill("#f-device", "cpu")
    page.fill("#f-backups", "0")
    page.click("#btn-start")
    page.wait_for_selector("#train-state.running", timeout=30_000)
    page.wait_for_function("() => +document.querySelector('#st-iter').textContent.replace(/,/g, '') > 0", timeout=60_000)
    first = iteration(page)
    page.wait_for_function(f"() => +document.querySelector('#st-iter').textContent.replace(/,/g, '') > {first}", timeout=30_000)
    page.wait_for_function("() => +document.querySelector('#loss-chart').dataset.points > 0", timeout=30_000)
    assert page.locator("#st-ms").inner_text().endswith("ms") and page.locator("#st-src").inner_text() != "–"

    # the job outlives the page: close it and open another
    other = page.context.new_page()
    page.close()
    other.goto(live_ui.base + "/train")
    page = other
    page.wait_for_selector("#train-state.running")
    job_id = json.loads(page.evaluate("() => fetch('/api/jobs').then(r => r.text())"))[0]["id"]
    assert page.locator("#model-pick").input_value() == "quick\u0000"

    # P (on a Russian layout the key prints "з"): a new preview.jpg arrives and the image reloads
    assert page.locator("#pv-img").is_hidden()  # the first preview comes after 2 minutes, or on request
    press(page, "KeyP", "з")
    page.wait_for_function("() => { const i = document.querySelector('#pv-img'); return !i.hidden && i.complete && i.naturalWidth > 0; }",
                           timeout=30_000)
    shown = page.locator("#pv-img").get_attribute("src")
    assert shown.startswith("/files/model/quick/preview.jpg?t=")
    press(page, "KeyP", "з")
    page.wait_for_function(f"() => document.querySelector('#pv-img').getAttribute('src') !== {json.dumps(shown)}", timeout=30_000)
    page.wait_for_function("() => document.querySelector('#pv-img').complete && document.querySelector('#pv-img').naturalWidth > 0")

    # L cycles the loss range: all -> 5k
    press(page, "KeyL", "д")
    page.wait_for_selector("#range-tabs button[data-range='5000'][aria-selected=true]")
    page.screenshot(path=str(tmp_path / "train.png"))

    page.click("#btn-stop")
    page.wait_for_selector("#train-state.cancelled", timeout=60_000)
    job = json.loads(page.evaluate(f"() => fetch('/api/jobs/{job_id}').then(r => r.text())"))
    saved = json.loads((live_ui.ws.model_dir("quick") / "state.json").read_text())
    assert job["state"] == "cancelled" and saved["iteration"] == job["done"] == job["summary"]["counts"]["iteration"]
    page.wait_for_function(f"() => document.querySelector('#st-iter').textContent.replace(/,/g, '') === '{job['done']}'")
    page.wait_for_function("() => document.querySelector('#st-saved').textContent === 'just now'")
    assert not page.locator("#btn-start").is_disabled() and page.locator("#btn-stop").is_disabled()


def test_space_cycles_the_preview_between_this_model_its_history_and_other_models(page, live_ui, marker):
    from facelab.stages import train

    for name, target in (("one", 4), ("one", 8), ("two", 4)):
        train.run(live_ui.ws, train.TrainSettings(name=name, iterations=target, batch_size=2, device="cpu",
                                                  preview_history=True, backups=0), log=lambda _line: None, marker=marker)
    page.goto(live_ui.base + "/train")
    page.wait_for_selector("#pv-img:not([hidden])")
    label = page.locator("#pv-label")
    assert label.inner_text().startswith("one · latest") and "[1/3, Space]" in label.inner_text()
    press(page, "Space", " ")
    page.wait_for_function("() => document.querySelector('#pv-label').textContent.startsWith('one · history · iteration 8')")
    assert page.locator("#pv-img").get_attribute("src") == "/files/model/one/previews/preview_00000008.jpg"
    page.keyboard.press("ArrowLeft")  # an earlier frame of the history
    page.wait_for_function("() => document.querySelector('#pv-label').textContent.startsWith('one · history · iteration 4')")
    press(page, "Space", " ")
    page.wait_for_function("() => document.querySelector('#pv-label').textContent.startsWith('two · latest')")
    press(page, "Space", " ")
    page.wait_for_function("() => document.querySelector('#pv-label').textContent.startsWith('one · latest')")
