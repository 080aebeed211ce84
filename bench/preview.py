"""What a preview adds to a prototype on the offline tier: the offline template's code for an idea, checked in the
real sandbox (compile, pytest), then its app started in its own jail, its page fetched and shot by the browser.
Prints, per round and as medians: the checks, then the start (the jail and the app until it answers), the page
(the GET that answered) and the screenshot (the browser's run), and the whole preview (its jail, end to end).

    .venv/bin/python -m bench.preview [--rounds 5] [--browser /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import statistics
import time

from activities.ai.offline import template_answer
from activities.packaging import code_files
from activities.sandbox import Sandbox
from models.prompts import CODE, REQUIREMENTS, TESTS

IDEA = "A booking app for dog walkers. Owners book walks. Walkers see their day at a glance."


def offline_files(idea: str) -> dict[str, str]:
    requirements = template_answer(REQUIREMENTS.call(idea, {}))
    answers = {"requirements": requirements, "plan": ""}
    return code_files(template_answer(CODE.call(idea, answers))) | code_files(
        template_answer(TESTS.call(idea, answers))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--browser", default="/usr/bin/chromium")
    options = parser.parse_args()
    sandbox = Sandbox(browser=options.browser)
    if not sandbox.available:
        raise SystemExit(f"the sandbox cannot run here: {sandbox.availability.reason}")
    if isinstance(sandbox.browser, str):
        print(f"no screenshot: {sandbox.browser}")
    files = offline_files(IDEA)
    rows: list[dict[str, float]] = []
    print(f"{'round':>5} {'checks':>8} {'start':>8} {'page':>8} {'shot':>8} {'preview':>8}  (seconds)")
    for number in range(1, options.rounds + 1):
        with sandbox.folder_of(files) as folder:
            began = time.perf_counter()
            checks = sandbox.checks(folder, files)
            checked = time.perf_counter()
            app = sandbox.start_app(folder)
            ended = time.perf_counter()
        if not all(check.passed for check in checks) or not app.app_started:
            raise SystemExit(f"the offline template did not pass: {[*checks, app.check]}")
        row = {
            "checks": checked - began,
            "start": app.seconds.get("start", 0.0),
            "page": app.seconds.get("page", 0.0),
            "shot": app.seconds.get("screenshot", 0.0),
            "preview": ended - checked,
        }
        rows.append(row)
        print(
            f"{number:>5} "
            + " ".join(f"{value:>8.2f}" for value in row.values())
            + f"  {app.preview_unavailable or ''}"
        )
    medians = {name: statistics.median(row[name] for row in rows) for name in rows[0]}
    print("  med " + " ".join(f"{value:>8.2f}" for value in medians.values()))


if __name__ == "__main__":
    main()
