"""The dashboard in a real browser (Debian's Chromium, headless, through Playwright): a workflow's progress
appears live, the pause button pauses, an errored node is shown and reset, a job's graph is rendered with its
state highlighted, the token stays out of the URL, and the page fits a phone screen. Screenshots are saved
(``PODIUM_SCREENSHOT_DIR=docs/img`` refreshes the README's)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.clock import system_clock
from podium.engine import InProcessWorker
from podium.flow import Node, NodePolicy, create
from podium.store.flow_state import StoreStateStore
from podium.testing import EngineHarness, join
from podium.workcell.demo import DEMO_DIR
from tests.demo_lab import served_demo_lab
from tests.flow.helpers import identity, msg
from tests.server.harness import CLIENT_TOKEN, running_stack, transcode_blueprint

WAIT_MS = 15_000
# Fixture order matters: the servers come before the browser, so the browser (and its live event streams)
# closes before the servers stop.


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple[str, str, dict[str, Any]]]:
    """The demo workcell on simulated instruments whose actions take 0.3 s, served on loopback."""
    async with served_demo_lab(tmp_path, action_s=0.3) as served:
        yield served


async def signed_in(browser: Any, url: str, token: str, **context: Any) -> Any:
    page = await (await browser.new_context(**context)).new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{url}/dashboard")
    await page.fill("#token", token)
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("[data-testid=live].on")
    return page


async def submit(url: str, token: str, workflow: dict[str, Any], inputs: str = "{}") -> str:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        definition = (await http.post("/workflow_definition", json=workflow)).json()
        answer = await http.post(
            "/workflow", data={"workflow_definition_id": definition, "json_inputs": inputs}
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["workflow_id"])


async def test_sign_in_keeps_the_token_out_of_the_url(lab: tuple[str, str, Any], browser: Any) -> None:
    url, token, _ = lab
    page = await (await browser.new_context()).new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{url}/dashboard")
    await page.fill("#token", "wrong")
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#login-error:text('refused')")
    assert await page.is_visible("#login")
    await page.fill("#token", token)
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("[data-testid=node]")
    assert token not in page.url
    stored = await page.evaluate("Object.values(sessionStorage)")
    assert stored == [token]
    assert await page.evaluate("Object.keys(localStorage).length") == 0


async def test_a_late_refusal_of_an_earlier_token_does_not_sign_out_the_new_one(
    lab: tuple[str, str, Any], browser: Any
) -> None:
    """On a loaded machine the answers to a wrong token's requests can arrive after the right token is signed
    in (CI saw the page go back to the sign-in form). Here the wrong token's event stream (``/events``) is held
    until the right token is in, then let through to its 401."""
    url, token, _ = lab
    page = await (await browser.new_context()).new_page()
    page.set_default_timeout(WAIT_MS)
    held: asyncio.Queue[Any] = asyncio.Queue()

    async def hold_the_wrong_tokens_stream(route: Any) -> None:
        if route.request.headers.get("x-client-token") == "wrong":
            await held.put(route)
        else:
            await route.continue_()

    await page.route("**/events", hold_the_wrong_tokens_stream)
    await page.goto(f"{url}/dashboard")
    await page.fill("#token", "wrong")
    await page.click("#login button[type=submit]")
    late = await asyncio.wait_for(held.get(), WAIT_MS / 1000)
    await page.wait_for_selector("#login-error:text('refused')")  # another request's 401 came first
    await page.fill("#token", token)
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("[data-testid=live].on")
    answered = asyncio.get_running_loop().create_future()
    page.on(
        "response",
        lambda r: (
            r.url.endswith("/events") and r.status == 401 and not answered.done() and answered.set_result(r)
        ),
    )
    await late.continue_()  # the server now refuses the earlier token
    await asyncio.wait_for(answered, WAIT_MS / 1000)
    await page.wait_for_selector("[data-testid=node]")
    assert not await page.is_visible("#login")
    assert await page.evaluate("Object.values(sessionStorage)") == [token]


async def test_workflow_progress_appears_live(lab: tuple[str, str, Any], browser: Any, shots: Path) -> None:
    url, token, _ = lab
    page = await signed_in(browser, url, token, viewport={"width": 1280, "height": 900})
    await page.evaluate("window.__sameDocument = true")
    # When the plate assay is submitted through the API (not the page)
    workflow = (DEMO_DIR / "plate_assay.workflow.yaml").read_text()
    import yaml

    wf_id = await submit(url, token, yaml.safe_load(workflow))
    card = f"[data-testid=workflow][data-workflow='{wf_id}']"
    # Then the page shows it running, step by step, and then completed, with no reload
    await page.wait_for_selector(f"{card} [data-testid=step][data-status=succeeded]")
    await page.wait_for_selector(f"{card}[data-state=running]")
    await page.screenshot(path=str(shots / "dashboard-workcell.png"), full_page=True)
    await page.wait_for_selector(f"{card}[data-state=completed]", timeout=30_000)
    statuses = await page.eval_on_selector_all(
        f"{card} [data-testid=step]", "els => els.map(e => e.dataset.status)"
    )
    assert statuses == ["succeeded"] * 7
    assert await page.evaluate("window.__sameDocument") is True  # no full-page reload happened
    # Its datapoints are offered for download
    offered = await page.eval_on_selector_all(
        f"{card} [data-testid=datapoint]", "els => els.map(e => e.textContent)"
    )
    assert {"⤓ summary", "⤓ absorbance_csv"} <= set(offered)
    async with page.expect_download() as download:
        await page.click(f"{card} [data-testid=datapoint]:text('absorbance_csv')")
    saved = await (await download.value).path()
    assert Path(saved).read_text().count("\n") >= 96
    # The plate moved to the reader tray: its wells are drawn there
    await page.wait_for_selector("[data-location=reader_tray] [data-testid=wells]")
    assert await page.locator("[data-location=reader_tray] [data-testid=wells] span").count() == 96
    assert await page.locator("[data-location=plate_stack] [data-testid=wells]").count() == 0


async def test_submit_form_then_pause_button_pauses(lab: tuple[str, str, Any], browser: Any) -> None:
    url, token, _ = lab
    page = await signed_in(browser, url, token)
    # When a workflow YAML with a parameter is submitted through the page's form
    hold = "name: hold\nparameters:\n  - name: s\nsteps:\n  - name: hold\n    action: wait\n    args: {seconds: $s}\n"
    await page.fill("[data-testid=submit-yaml]", hold)
    await page.fill("[data-testid=submit-inputs]", '{"s": 600}')
    await page.click("form.card button[type=submit]")
    await page.wait_for_selector("[data-testid=submit-result]:text('submitted')")
    wf_id = (await page.inner_text("[data-testid=submit-result]")).split()[-1]
    card = f"[data-testid=workflow][data-workflow='{wf_id}']"
    await page.wait_for_selector(f"{card}[data-state=running]")
    # Then its pause button pauses it (as the API says too), resume resumes, cancel cancels
    await page.click(f"{card} [data-testid=pause]")
    await page.wait_for_selector(f"{card}[data-state=paused]")
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        run = (await http.get(f"/workflow/{wf_id}")).json()
    assert run["status"]["paused"] is True and run["steps"][0]["args"] == {"seconds": 600}
    await page.click(f"{card} [data-testid=resume]")
    await page.wait_for_selector(f"{card}[data-state=running]")
    await page.click(f"{card} [data-testid=cancel]")
    await page.wait_for_selector(f"{card}[data-state=cancelled]")
    # A refused YAML says why, and nothing is queued
    await page.fill(
        "[data-testid=submit-yaml]", "name: bad\nsteps:\n  - name: x\n    node: nope\n    action: y\n"
    )
    await page.fill("[data-testid=submit-inputs]", "")
    await page.click("form.card button[type=submit]")
    await page.wait_for_selector("[data-testid=submit-result]:text('refused')")
    assert "nope" in await page.inner_text("[data-testid=submit-result]")


async def test_an_errored_node_is_shown_and_reset(
    lab: tuple[str, str, Any], browser: Any, shots: Path
) -> None:
    url, token, nodes = lab
    nodes["sealer_1"].inject_failure(fail_next=1, actions=["seal"], errored=True, message="heater fault")
    page = await signed_in(browser, url, token, viewport={"width": 390, "height": 844}, is_mobile=True)
    wf_id = await submit(
        url, token, {"name": "seal", "steps": [{"name": "seal", "node": "sealer_1", "action": "seal"}]}
    )
    card = f"[data-testid=workflow][data-workflow='{wf_id}']"
    await page.wait_for_selector(f"{card}[data-state=failed]")
    assert "heater fault" in await page.inner_text(card)
    sealer = "[data-testid=node][data-node=sealer_1]"
    await page.wait_for_selector(f"{sealer}[data-condition=errored]")
    # It fits a phone screen: nothing wider than the viewport
    assert await page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    await page.screenshot(path=str(shots / "dashboard-phone.png"), full_page=False)
    await page.click(f"{sealer} [data-testid=node-reset]")
    await page.wait_for_selector(f"{sealer}[data-condition=ready]")
    # The failed workflow is retried from its step with the retry button, and completes
    await page.click(f"{card} [data-testid=retry]")
    await page.wait_for_selector(f"{card}[data-state=completed]")


async def test_job_page_draws_the_graph_with_the_current_state(browser: Any, shots: Path) -> None:
    bp = transcode_blueprint()
    worker = InProcessWorker("gpu-1", skills={"video_transcoding": lambda: {"status": "success", "data": {}}})
    harness = EngineHarness(blueprints=[bp], workers=[worker], clock=system_clock)
    async with running_stack(harness.engine) as stack:
        done = await stack.engine.create_job("transcode", {"path": "a.mov"})
        await join(stack.engine, done)
        page = await signed_in(browser, stack.url, CLIENT_TOKEN, viewport={"width": 1280, "height": 900})
        await page.wait_for_selector(f"[data-testid=job-row][data-job='{done}']")
        # A job created while the page is open appears without a reload
        second = await stack.engine.create_job("transcode", {"path": "b.mov"})
        await page.wait_for_selector(f"[data-testid=job-row][data-job='{second}']")
        await join(stack.engine, second)
        await page.click(f"[data-testid=job-row][data-job='{done}']")
        await page.wait_for_selector("[data-testid=job-graph][data-rendered=true] svg")
        text = await page.inner_text("[data-testid=job-graph]")
        assert "start" in text and "publish" in text
        assert await page.locator("[data-testid=job-graph] svg .current").count() >= 1
        assert await page.locator("[data-testid=history]").count() >= 4
        assert "gpu-1" in await page.inner_text("#workers")
        await page.select_option("[data-testid=filter-status]", "failed")
        await page.wait_for_function("document.querySelectorAll('[data-testid=job-row]').length === 0")
        await page.select_option("[data-testid=filter-status]", "")
        await page.wait_for_selector(f"[data-testid=job-row][data-job='{done}']")
        # A flow that keeps its trace on the server's store is looked up by its trace id
        state = StoreStateStore(stack.engine.storage)
        flow = create(Node(identity, name="echo", policy=NodePolicy(validate="none")).to(), state_store=state)
        flow.run()
        try:
            message = msg({"q": "plate"})
            await flow.emit(message)
            await asyncio.wait_for(flow.fetch(), 5)
        finally:
            await flow.stop()
        await page.fill("[data-testid=trace-id]", message.trace_id)
        await page.click("text=Show trace")
        await page.wait_for_selector("[data-testid=trace-event]")
        assert "echo" in await page.inner_text("#trace")
        await page.fill("[data-testid=trace-id]", "no-such-trace")
        await page.click("text=Show trace")
        await page.wait_for_selector("[data-testid=trace-note]:text('no events')")
        await page.screenshot(path=str(shots / "dashboard-jobs.png"), full_page=True)
        await page.context.close()  # its event stream ends before the server stops
