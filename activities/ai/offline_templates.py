"""What the offline provider answers to each prototype step (workflows/prototype.py names the steps).

Templates to fill in, not answers: each says so in its first line, and the code and tests steps' files say so in
their own first line, so a downloaded prototype can never be mistaken for a model's work. Those steps give their
files as fenced blocks naming a path, the format they ask a model for, so the same packaging and sandbox read
both (the template's tests pass against the template's code).
"""

from __future__ import annotations

_REQUIREMENTS = """# Requirements (template)

Fill in each heading for your idea; the idea itself is in README.md.

## Who uses it
- Primary user: …
- Other roles (admin, guest): …

## What they need to do
- As a user I want to …, so that …
- As a user I want to …, so that …

## The data it keeps
- …

## Out of scope for the first prototype
- Payments, notifications and integrations, unless the idea is about them.
"""

_PLAN = """# Plan (template)

1. **Screens**: a start page that states the idea, one page per user story, nothing else.
2. **Data**: one table per noun in the requirements; start with an in-memory list, add a database later.
3. **Files**: `main.py` (a web server with the start page) and `requirements.txt`; see `code/`.
4. **Next**: replace the start page with the first user story, then add storage.
"""

_CODE = '''A runnable skeleton to start from, using nothing but the Python standard library
(`python code/main.py`, then open http://127.0.0.1:8080).

```python main.py
"""Offline template: no AI model wrote this. A minimal web app to grow the prototype from."""

from http.server import BaseHTTPRequestHandler, HTTPServer

PAGE = b"""<!doctype html>
<meta charset="utf-8">
<title>Prototype</title>
<h1>Prototype skeleton</h1>
<p>Offline template: replace this page with the first screen in PLAN.md.</p>
"""


class StartPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", 8080), StartPage).serve_forever()
```

```text requirements.txt
# Offline template: the skeleton needs nothing beyond the Python standard library.
```
'''

_TESTS = '''Tests of the skeleton in `code/`, to run with `python -m pytest` in that folder. Replace them with one
test per user story in REQUIREMENTS.md as the code grows.

```python test_main.py
"""Offline template: no AI model wrote this. Tests of the skeleton's start page, with no server started."""

import main


def test_the_start_page_is_html_naming_the_prototype() -> None:
    assert main.PAGE.startswith(b"<!doctype html>")
    assert b"Prototype skeleton" in main.PAGE


def test_the_start_page_answers_get_requests() -> None:
    assert callable(main.StartPage.do_GET)
```
'''

_REVIEW = """# Review (template)

The code is a template, so there is nothing of yours to review yet. Before you build on it, check:

- [ ] Every user story in REQUIREMENTS.md has a screen or an endpoint.
- [ ] Input from users is validated before it is stored or shown (no HTML injection on the start page).
- [ ] Secrets come from the environment, never from the code.
- [ ] There is one test per user story.
"""

PROTOTYPE_TEMPLATES: dict[str, str] = {
    "requirements": _REQUIREMENTS,
    "plan": _PLAN,
    "code": _CODE,
    "tests": _TESTS,
    "review": _REVIEW,
}
