"""`r1lab serve`'s chat page (stages/serve_page.html) driven in a real browser: Debian's chromium,
through playwright (its own browser download is not used: `make browser` installs chromium).

One server with an API key and the tiny reasoner: a message sent without the key shows the
server's error; with the key and temperature 0 the reply streams in exactly, its thinking folded
above its answer, and unfolds on a click."""

import os
from pathlib import Path

import pytest

from tests.stages.serving import ANSWER, QUESTION, THINKING, save_tiny_reasoner, served

CHROMIUM = Path("/usr/bin/chromium")
# headless in a container, as root, with no network beyond the server: no sandbox, GPU or background traffic
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: `make browser` installs Debian's chromium"
        if os.environ.get("R1LAB_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (R1LAB_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def reasoner(tmp_path_factory):
    return save_tiny_reasoner(tmp_path_factory.mktemp("serve_page") / "model")


def test_chat_page(browser, reasoner):
    with served(reasoner, "--api-key", "secret", "--name", "reasoner") as (_, url):
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(url + "/")

        # (a) no key: the server's 401 shows on the page; the message goes back into the box
        page.fill("#message", QUESTION)
        page.press("#message", "Enter")  # Enter sends
        error = page.locator("#chat .error")
        error.wait_for()
        assert "authorization" in error.text_content().lower() and "api key" in error.text_content().lower()
        assert page.locator("#chat .reply").count() == 0
        assert page.input_value("#message") == QUESTION

        # (b) the key, greedy decoding: the reply is exact, its thinking folded
        page.fill("#api-key", "secret")
        page.fill("#temperature", "0")
        page.fill("#message", QUESTION)
        page.click("#send")
        page.locator("#chat .reply[data-state=done]").wait_for()
        reply = page.locator("#chat .reply")
        assert page.locator("#chat .error").count() == 0
        assert page.locator("#chat .user").all_text_contents() == [QUESTION]
        thinking = reply.locator("details.thinking")
        assert thinking.count() == 1
        assert not thinking.evaluate("d => d.open")
        assert thinking.locator("summary").text_content().startswith("Thought")
        assert THINKING in thinking.text_content()
        assert reply.locator(".answer").text_content() == ANSWER
        assert page.is_enabled("#send") and not page.is_visible("#stop")

        thinking.locator("summary").click()
        assert thinking.evaluate("d => d.open")
        assert page.evaluate("localStorage.getItem('r1lab-api-key')") == "secret"
        page.close()
