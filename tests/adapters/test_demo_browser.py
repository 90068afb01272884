"""End to end: the agent-chat page in headless Chromium, as the people using it see it.

Two users side by side (alice in a wide window, bob in a 390 px wide one), a second
tab of alice, a reload, the per-user agent cap, an old sign-in link and sign-out.
Uses Debian's ``chromium`` (``/usr/bin/chromium``) through Playwright's
``executable_path``; install it with ``scripts/install-browser.sh``. Screenshots of
both widths are written to ``/tmp/userscope-agent-chat-{1280,390}.png`` and of the
refusal to ``/tmp/userscope-agent-chat-1280-refused.png``.

The page sends a strict Content-Security-Policy (no ``eval``), so the test waits with
locators, never with ``wait_for_function``.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
from typing import Any

import pytest
from adapter_support import serve
from examples.agent_chat import DemoSettings, create_app, mint_token
from playwright.async_api import BrowserContext, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECRET = "browser-test-secret-browser-test-secret"
SCREENSHOT = "/tmp/userscope-agent-chat-{width}.png"
BOUND = 50.0  # seconds for the whole browser session: the test must stay under a minute


async def send(page: Page, agent: str, text: str) -> None:
    await page.select_option("#agent", agent)
    await page.fill("#text", text)
    await page.click("#send")


async def shown(page: Page) -> list[dict[str, Any]]:
    return await page.eval_on_selector_all(
        "#events > li",
        "items => items.map(li => ({user: li.dataset.userId || null, "
        "cls: li.className, text: li.querySelector('.text').textContent, "
        "status: li.querySelector('.status')?.textContent || null, "
        "steps: Array.from(li.querySelectorAll('.steps li'), s => s.textContent)}))",
    )


async def done(page: Page, count: int) -> None:
    """Wait until ``count`` runs show their "done" state."""
    await page.locator("#events li.agent.done").nth(count - 1).wait_for()


async def open_page(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    page.set_default_timeout(15_000)
    await page.goto(url)
    return page


def require_chromium(path: str = CHROMIUM) -> None:
    """Fail (never skip) when the browser is missing, saying how to install it."""
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run scripts/install-browser.sh (Debian chromium)")


def test_missing_chromium_fails_with_the_install_hint() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"scripts/install-browser\.sh"):
        require_chromium("/nonexistent/chromium")


async def test_two_people_side_by_side(caplog: pytest.LogCaptureFixture) -> None:
    require_chromium()
    caplog.set_level(logging.INFO, logger="examples.agent_chat")
    faulthandler.dump_traceback_later(BOUND + 30, exit=True)  # a hang shows where it is
    app = create_app(DemoSettings(secret=SECRET, token_delay=0.005))
    try:
        with serve(app) as server:
            async with asyncio.timeout(BOUND):
                result = await _session(server.http)
    finally:
        faulthandler.cancel_dump_traceback_later()
    seen, after_reload, tab2_items, extra = result

    # isolation: each person sees only their own events, stamped with their id
    for user, other in (("alice", "bob"), ("bob", "alice")):
        items = seen[user]
        assert {item["user"] for item in items} == {user}
        assert all(other not in item["text"] for item in items)
        asked = [item["text"] for item in items if "you" in item["cls"].split()]
        assert all(text.startswith(user) for text in asked)
        replies = [item for item in items if "agent" in item["cls"].split()]
        assert len(replies) == len(asked)
        # every run shows its steps and a visible "done" state
        assert all(len(item["steps"]) == 3 for item in replies)
        assert all(item["status"].startswith("✓ done in") for item in replies)
    # the agent remembers the person's earlier messages (and only theirs)
    alice_replies = [i for i in seen["alice"] if "agent" in i["cls"].split()]
    assert "nothing remembered yet" in alice_replies[0]["steps"][0]
    assert "alice asks about tides" in alice_replies[1]["steps"][0]
    assert "12 * 7 = 84" in alice_replies[1]["text"]
    bob_replies = [i for i in seen["bob"] if "agent" in i["cls"].split()]
    assert "nothing remembered yet" in bob_replies[0]["steps"][0]

    # a reload shows the same conversation again, and the token is not in the address bar
    assert after_reload["items"] == seen["alice"]
    assert "token" not in after_reload["url"]
    assert after_reload["badge"] == "signed in as alice"

    # alice's second tab: its own conversation; the cap refusal keeps the message
    refused = [i for i in tab2_items if "error" in i["cls"].split()]
    assert len(refused) == 1
    assert "you already use 3 agents" in refused[0]["text"]
    assert extra["tab2_input"] == "a fourth agent please"
    assert extra["tab2_disabled"] == ["critic (limit reached)"]
    assert extra["tab2_agent_after"] != "critic"  # it offers an agent she may still use
    assert "this tab and 1 other tab" in extra["tab2_connections"]

    # bob's narrow window: the Send button is fully visible; too long is said, not cut
    assert extra["send_box"]["x"] + extra["send_box"]["width"] <= 390
    assert extra["too_long"] == ("2001 / 2000: 1 too many", True)
    assert extra["wrapped"] <= 390  # a long unbroken word wraps inside its bubble

    # an old link: said so, no retry loop; sign-out forgets the token
    assert extra["old_link"] == ("This sign-in link is no longer valid", None)
    assert extra["signed_out"] == ("Signed out", None)
    lines = [r.getMessage() for r in caplog.records if r.name == "examples.agent_chat"]
    assert len([line for line in lines if line.startswith("refused sign-in")]) == 1
    # no tracebacks (the runtime's log of a bridge cleanup cancelled at server shutdown aside)
    shown_in_log = [r for r in caplog.records if not r.getMessage().startswith("cleanup of")]
    assert all(r.exc_info is None for r in shown_in_log)
    assert app.state.sessions.stats().connections == 0


async def _session(base: str) -> Any:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            return await _people(browser, base)
        finally:
            await browser.close()


async def _people(browser: Any, base: str) -> Any:
    widths = {"alice": 1280, "bob": 390}
    contexts: dict[str, BrowserContext] = {}
    pages: dict[str, Page] = {}
    for user, width in widths.items():
        contexts[user] = await browser.new_context(viewport={"width": width, "height": 760})
        pages[user] = await open_page(contexts[user], f"{base}/#token={mint_token(SECRET, user)}")
        await pages[user].wait_for_selector(f"#whoami:has-text('signed in as {user}')")
    alice, bob = pages["alice"], pages["bob"]
    # alice's second tab, opened with her link, about to ask a fourth agent
    tab2 = await open_page(contexts["alice"], f"{base}/#token={mint_token(SECRET, 'alice')}")
    await tab2.wait_for_selector("#whoami:has-text('signed in as alice')")
    await tab2.select_option("#agent", "critic")
    await tab2.fill("#text", "a fourth agent please")

    # interleave: both people chat at the same time
    await send(alice, "researcher", "alice asks about tides")
    await send(bob, "coder", "bob wants a parser")
    await done(alice, 1)
    await done(bob, 1)
    await send(alice, "coder", "alice: what is 12 * 7")
    await send(bob, "assistant", "bob says " + "z" * 300)
    await done(alice, 2)
    await done(bob, 2)
    await send(alice, "assistant", "alice says thanks")
    await done(alice, 3)

    # the cap: alice now uses 3 agents; her second tab still has critic selected
    await tab2.locator("#agent option[disabled]").wait_for(state="attached")
    await tab2.click("#send")
    await tab2.locator("#events li.error").wait_for()
    extra: dict[str, Any] = {
        "tab2_input": await tab2.input_value("#text"),
        "tab2_disabled": await tab2.eval_on_selector_all(
            "#agent option[disabled]", "options => options.map(o => o.textContent)"
        ),
    }
    await tab2.locator("#scope-connections", has_text="1 other tab").wait_for()
    await tab2.locator("#agent option:checked:not([disabled])").wait_for(state="attached")
    extra["tab2_agent_after"] = await tab2.input_value("#agent")
    extra["tab2_connections"] = await tab2.text_content("#scope-connections")
    tab2_items = await shown(tab2)
    await tab2.screenshot(path=SCREENSHOT.format(width="1280-refused"))

    # bob's narrow window
    extra["send_box"] = await bob.locator("#send").bounding_box()
    extra["wrapped"] = await bob.eval_on_selector(
        "#events li.agent:last-child", "li => li.getBoundingClientRect().right"
    )
    seen = {"alice": await shown(alice), "bob": await shown(bob)}
    for user, page in pages.items():
        await page.locator("#scope-requests", has_text="no AgentRun").wait_for()
        await page.screenshot(path=SCREENSHOT.format(width=widths[user]))
    await bob.fill("#text", "y" * 2001)
    extra["too_long"] = (
        await bob.text_content("#count"),
        await bob.is_disabled("#send"),
    )

    # reload: the conversation comes back, the token stays out of the address bar
    await alice.reload()
    await alice.wait_for_selector("#whoami:has-text('signed in as alice')")
    await done(alice, 3)
    after_reload = {
        "items": await shown(alice),
        "url": alice.url,
        "badge": await alice.text_content("#whoami"),
    }

    # an old link (another secret, as after a restart of the demo): said, not retried
    stale = await open_page(
        await browser.new_context(),
        f"{base}/#token={mint_token('an-older-secret-of-an-earlier-run-000000', 'alice')}",
    )
    await stale.locator("#gate:not([hidden])").wait_for()
    await asyncio.sleep(0.5)  # a retry loop would show up as reconnects
    extra["old_link"] = (
        await stale.text_content("#gate-title"),
        await stale.evaluate("document.body.dataset.reconnects ?? null"),
    )

    # sign-out: the tab forgets its token and closes its connection
    await bob.click("#signout")
    await bob.locator("#gate:not([hidden])").wait_for()
    extra["signed_out"] = (
        await bob.text_content("#gate-title"),
        await bob.evaluate("sessionStorage.getItem('agent-chat-token')"),
    )
    for context in contexts.values():
        await context.close()
    return seen, after_reload, tab2_items, extra


async def test_page_says_once_that_events_are_unavailable_and_keeps_retrying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_chromium()
    monkeypatch.setenv("USERSCOPE_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens
    monkeypatch.setenv("USERSCOPE_EVENTS_SECRET", "browser-events-secret-browser-events-0")
    app = create_app(DemoSettings(secret=SECRET, events_timeout=0.3))
    with serve(app) as server:
        async with asyncio.timeout(BOUND), async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await open_page(
                    await browser.new_context(viewport={"width": 390, "height": 700}),
                    f"{server.http}/#token={mint_token(SECRET, 'alice')}",
                )
                await page.locator("#events li.events-down").wait_for()
                # the page retries (1013: try again later) without repeating the message
                await page.locator("body[data-reconnects='3']").wait_for(state="attached")
                badge = await page.text_content("#whoami")
                notices = await page.locator("#events li.events-down").count()
                text = await page.text_content("#events li.events-down .text")
            finally:
                await browser.close()
    assert badge in ("events unavailable, retrying…", "reconnecting (1013)…")
    assert notices == 1
    assert text == "the event service is unavailable right now; reconnecting shortly"


async def test_expired_sign_in_on_an_open_page_is_said_and_not_retried() -> None:
    require_chromium()
    app = create_app(DemoSettings(secret=SECRET, token_delay=0.005))
    with serve(app) as server:
        async with asyncio.timeout(BOUND), async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await open_page(
                    await browser.new_context(),
                    f"{server.http}/#token={mint_token(SECRET, 'alice', ttl=4)}",
                )
                await page.wait_for_selector("#whoami:has-text('signed in as alice')")
                # at `exp` the adapter closes the socket with 1008; the page asks why
                await page.locator("#gate:not([hidden])").wait_for()
                await asyncio.sleep(0.5)  # a retry loop would show up as reconnects
                title = await page.text_content("#gate-title")
                reconnects = await page.evaluate("document.body.dataset.reconnects ?? null")
                token = await page.evaluate("sessionStorage.getItem('agent-chat-token')")
            finally:
                await browser.close()
    assert title == "Your sign-in has expired"
    assert reconnects is None
    assert token is None
