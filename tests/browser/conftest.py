"""Debian's Chromium driven by Playwright (never `playwright install`: nothing is downloaded at run time)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from tests.browser.helpers import CHROMIUM, CHROMIUM_ARGS, chromium_missing


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    missing = chromium_missing()
    if missing:  # fail, not skip: CI installs Chromium (scripts/install-system-deps.sh), a skip would hide it
        pytest.fail(missing)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()
