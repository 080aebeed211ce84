"""Whether this host can take pictures of generated apps: PREVIEWS_ENABLED, the sandbox, and the headless browser
(PREVIEW_BROWSER, Debian's `chromium`), found as the sandbox finds it. The worker takes the pictures; GET
/api/capabilities asks the same question with the same settings, as it does for the sandbox."""

from __future__ import annotations

from activities.sandbox import Availability, sandbox_availability
from activities.sandbox_preview import Browser
from settings import Settings


def preview_availability(settings: Settings) -> Availability:
    """Why no picture can be taken here, in words an operator can act on; or available."""
    if not settings.previews_enabled:
        return Availability(False, "previews are turned off (PREVIEWS_ENABLED=false)")
    sandbox = sandbox_availability(settings.sandbox_bwrap)
    if not sandbox.available:
        return Availability(False, f"the sandbox, which starts the app, is unavailable: {sandbox.reason}")
    browser = Browser.find(settings.preview_browser)
    if isinstance(browser, str):
        return Availability(False, browser)
    return Availability(True)
