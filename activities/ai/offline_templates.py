"""What the offline provider answers to each prototype step (workflows/prototype.py names the steps).

Templates to fill in, not answers: each says so in its first line, and the code and tests steps' files say so in
their own first line, so a downloaded prototype can never be mistaken for a model's work. Those steps give their
files as fenced blocks naming a path, the format they ask a model for, so the same packaging and sandbox read
both (the template's tests pass against the template's code).
"""

from __future__ import annotations

import re

_REQUIREMENTS = """# Requirements (template)

Fill in each heading for your idea; the idea itself is in README.md.

## Who uses it
- Primary user: …
- Other roles (admin, guest): …

## What they need to do
__FEATURES__

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

_CODE = '''A runnable start page to grow from, using nothing but the Python standard library
(`python code/main.py`, then open http://127.0.0.1:8000; the PORT environment variable sets another port).

```python main.py
"""Offline template: no AI model wrote this. The start page of the idea's prototype, to grow from."""

import html
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

TITLE = __TITLE__
FEATURES = [
__FEATURES__
]
STYLE = (
    "body{font-family:sans-serif;margin:0;background:#f4f6fb;color:#1d2433}"
    "header{background:#3451b2;color:#fff;padding:2.5rem 3rem}h1{margin:0;font-size:2.4rem}"
    "main{padding:2rem 3rem}li{margin:.5rem 0;font-size:1.2rem}.note{color:#5b6478;font-size:.9rem}"
)


def start_page() -> bytes:
    """The page, the idea's words escaped: they are the customer's text, not HTML."""
    features = "".join(f"<li>{html.escape(feature)}</li>" for feature in FEATURES)
    return (
        "<!doctype html>\\n<html lang=\\"en\\">\\n<meta charset=\\"utf-8\\">\\n"
        f"<title>{html.escape(TITLE)}</title>\\n<style>{STYLE}</style>\\n"
        f"<header><h1>{html.escape(TITLE)}</h1></header>\\n"
        f"<main><h2>What it will do</h2>\\n<ul>{features}</ul>\\n"
        "<p class=\\"note\\">Offline template: replace this page with the first screen in PLAN.md.</p></main>\\n"
    ).encode()


PAGE = start_page()


class StartPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), StartPage).serve_forever()
```

```text requirements.txt
# Offline template: the start page needs nothing beyond the Python standard library.
```
'''

_TESTS = '''Tests of the start page in `code/`, to run with `python -m pytest` in that folder. Replace them with one
test per user story in REQUIREMENTS.md as the code grows.

```python test_main.py
"""Offline template: no AI model wrote this. Tests of the start page, with no server started."""

import html

import main

TITLE = __TITLE__


def test_the_start_page_is_html_naming_the_idea() -> None:
    assert main.PAGE.startswith(b"<!doctype html>")
    assert f"<h1>{html.escape(TITLE)}</h1>".encode() in main.PAGE


def test_the_start_page_lists_what_the_requirements_ask() -> None:
    assert main.FEATURES
    for feature in main.FEATURES:
        assert f"<li>{html.escape(feature)}</li>".encode() in main.PAGE


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
"""Each step's template, its __MARKERS__ to fill in (`prototype_template`)."""
TITLE_CHARS = 70
FEATURE_CHARS = 160
MOST_FEATURES = 6
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?P<text>.+)$")
_FEATURE_HEADINGS = ("need to do", "user stor", "feature", "what it does")


def prototype_template(step: str, idea: str, requirements: str) -> str:
    """The step's template, filled in with the idea's title and the features the requirements list."""
    title = idea_title(idea)
    if step == "requirements":
        return _filled(_REQUIREMENTS, FEATURES="\n".join(f"- {part}" for part in idea_parts(idea)))
    if step == "code":
        literals = "\n".join(f"    {_literal(feature)}," for feature in main_features(requirements, idea))
        return _filled(_CODE, TITLE=_literal(title), FEATURES=literals)
    if step == "tests":
        return _filled(_TESTS, TITLE=_literal(title))
    return PROTOTYPE_TEMPLATES[step]


def idea_title(idea: str) -> str:
    """The idea's first line or sentence, cut at a word within TITLE_CHARS."""
    parts = idea_parts(idea)
    if not parts:
        return "Your prototype"
    return _cut(parts[0], TITLE_CHARS)


def idea_parts(idea: str) -> list[str]:
    """The idea's lines and sentences, plain: what the offline requirements list as what users need to do."""
    lines = (re.sub(r"^[\s#>*+-]+", "", line).replace("`", "") for line in idea.splitlines())
    parts = (" ".join(part.split()).strip(" -:,;.") for line in lines for part in re.split(r"(?<=[.!?])\s+", line))
    return [_cut(part, FEATURE_CHARS) for part in parts if part][:MOST_FEATURES]


def main_features(requirements: str, idea: str) -> list[str]:
    """The bullets under the requirements' heading of what users need to do (or their user stories), as the
    requirements step wrote them; without such a heading its first bullets; without bullets the idea's parts."""
    listed: list[str] = []
    wanted = False
    for line in requirements.splitlines():
        if line.lstrip().startswith("#"):
            wanted = any(name in line.lower() for name in _FEATURE_HEADINGS)
            continue
        if wanted and (bullet := _BULLET.match(line)):
            listed.append(bullet["text"])
    if not listed:
        listed = [bullet["text"] for line in requirements.splitlines() if (bullet := _BULLET.match(line))]
    plain = [" ".join(re.sub(r"[*_`]+", "", text).split()) for text in listed]
    features = [_cut(text, FEATURE_CHARS) for text in plain if text.strip("…. ")]
    return features[:MOST_FEATURES] or idea_parts(idea) or ["Grow this page into the first screen in PLAN.md"]


def _filled(template: str, **values: str) -> str:
    """The template's __NAME__ markers replaced in one pass: a marker inside the customer's text stays text."""
    return re.sub(r"__([A-Z]+)__", lambda marker: values.get(marker[1], marker[0]), template)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:") + "…"


def _literal(text: str) -> str:
    """A Python string literal of the customer's text on one line, with no backtick (nothing in it can close the
    fenced block the file is given in)."""
    return repr(text).replace("`", "\\x60")
