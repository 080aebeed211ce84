"""Whether this host can take pictures of generated apps: PREVIEWS_ENABLED, the sandbox, and the headless browser
(PREVIEW_BROWSER, Debian's `chromium`). The worker takes the pictures; GET /api/capabilities asks the same question
with the same settings, as it does for the sandbox."""

from __future__ import annotations

import os
import shutil

from activities.sandbox import Availability, sandbox_availability
from settings import Settings


def browser_found(browser: str) -> bool:
    """A name on PATH or a path, executable by this process."""
    found = shutil.which(browser)
    return found is not None and os.access(found, os.X_OK)


def preview_availability(settings: Settings) -> Availability:
    """Why no picture can be taken here, in words an operator can act on; or available."""
    if not settings.previews_enabled:
        return Availability(False, "previews are turned off (PREVIEWS_ENABLED=false)")
    sandbox = sandbox_availability(settings.sandbox_bwrap)
    if not sandbox.available:
        return Availability(False, f"the sandbox, which starts the app, is unavailable: {sandbox.reason}")
    if not browser_found(settings.preview_browser):
        return Availability(
            False,
            f"no headless browser at PREVIEW_BROWSER ({settings.preview_browser}): install Debian's chromium on the "
            "worker, or set PREVIEW_BROWSER",
        )
    return Availability(True)
