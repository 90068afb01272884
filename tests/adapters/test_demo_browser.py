"""End to end: the agent-chat page in headless Chromium, two users side by side.

Uses Debian's ``chromium`` (``/usr/bin/chromium``) through Playwright's
``executable_path``; install it with ``scripts/install-browser.sh``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from examples.agent_chat import DemoSettings, create_app, mint_token
from playwright.async_api import Page, async_playwright

from conftest import serve

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
SCREENSHOT = "/tmp/userscope-agent-chat.png"


async def send(page: Page, agent: str, text: str) -> None:
    await page.select_option("#agent", agent)
    await page.fill("#text", text)
    await page.click("#send")


async def shown(page: Page) -> list[dict[str, Any]]:
    return await page.eval_on_selector_all(
        "#events li",
        "items => items.map(li => ({user: li.dataset.userId || null, "
        "cls: li.className, text: li.querySelector('.text').textContent}))",
    )


def require_chromium(path: str = CHROMIUM) -> None:
    """Fail (never skip) when the browser is missing, saying how to install it."""
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run scripts/install-browser.sh (Debian chromium)")


def test_missing_chromium_fails_with_the_install_hint() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"scripts/install-browser\.sh"):
        require_chromium("/nonexistent/chromium")


async def test_two_users_side_by_side_never_see_each_other() -> None:
    require_chromium()
    app = create_app(DemoSettings(secret=SECRET, token_delay=0.005))
    with serve(app) as server:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                pages: dict[str, Page] = {}
                for user in ("alice", "bob"):
                    context = await browser.new_context(viewport={"width": 720, "height": 520})
                    page = await context.new_page()
                    page.set_default_timeout(15_000)
                    await page.goto(f"{server.http}/#token={mint_token(SECRET, user)}")
                    await page.wait_for_selector(f"#whoami:has-text('signed in as {user}')")
                    pages[user] = page
                # interleave: both users chat at the same time
                await send(pages["alice"], "researcher", "alice asks about tides")
                await send(pages["bob"], "coder", "bob wants a parser")
                await send(pages["alice"], "assistant", "alice says thanks")
                await send(pages["bob"], "assistant", "bob says bye")
                for page in pages.values():
                    await page.wait_for_function(
                        "document.querySelectorAll('#events li.agent.done').length >= 2"
                    )
                await pages["alice"].screenshot(path=SCREENSHOT)
                seen = {user: await shown(page) for user, page in pages.items()}
            finally:
                await browser.close()
    for user, other in (("alice", "bob"), ("bob", "alice")):
        items = seen[user]
        assert {item["user"] for item in items} == {user}
        assert all(other not in item["text"] for item in items)
        asked = [item["text"] for item in items if "you" in item["cls"].split()]
        assert len(asked) == 2
        assert all(text.startswith(user) for text in asked)
        replies = [item["text"] for item in items if "agent" in item["cls"].split()]
        assert len(replies) == 2
        assert all(f"heard: {user}" in text for text in replies)
    sessions = app.state.sessions
    assert sessions.stats().connections == 0
