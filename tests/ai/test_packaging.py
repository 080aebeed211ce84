"""Packaging a prototype (pure): reading files out of a code answer, and a zip that is the same on every retry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from activities.ai.offline_templates import PROTOTYPE_TEMPLATES
from activities.packaging import code_files, fenced, package_entries, zip_package
from models.messages.prototypes import PrototypePackage, StepAnswer
from models.prompts import PIPELINE

ANSWER = """Here is the app.

```python app/main.py
print("hello")
```

### `requirements.txt`
```
fastapi
```

**templates/index.html**
```html
<h1>Hi</h1>
```

```json title="package.json"
{}
```

```python
print("a snippet without a name stays in CODE.md only")
```

```python ../../etc/passwd
root
```

```sh /usr/local/bin/evil
rm -rf /
```

```python app/main.py
print("corrected")
```
"""


def test_files_are_read_from_fenced_blocks_named_in_the_info_string_or_the_line_above() -> None:
    assert code_files(ANSWER) == {
        "app/main.py": 'print("corrected")\n',  # a file repeated later replaces the earlier one
        "requirements.txt": "fastapi\n",
        "templates/index.html": "<h1>Hi</h1>\n",
        "package.json": "{}\n",
    }


def test_no_path_from_a_model_can_leave_the_zips_code_folder() -> None:
    hostile = "\n".join(
        f"```text {path}\nx\n```" for path in ("../up.txt", "/abs.txt", "a/../../b.txt", "./ok.txt", "c\\d.txt")
    )
    assert code_files(hostile) == {"ok.txt": "x\n"}


def test_every_pipeline_step_has_an_offline_template_and_the_code_template_has_files() -> None:
    assert {step.name for step in PIPELINE} <= set(PROTOTYPE_TEMPLATES)
    assert set(code_files(PROTOTYPE_TEMPLATES["code"])) == {"main.py", "requirements.txt"}


def package(made_at: datetime) -> PrototypePackage:
    answers = [
        StepAnswer(step=step.name, document=step.document, text=ANSWER, model_used="openai:gpt-test",
                   cost_usd_micros=8755, holds_files=step.holds_files)
        for step in PIPELINE
    ]  # fmt: skip
    return PrototypePackage(
        prototype_id=uuid.UUID(int=1),
        user_id=uuid.UUID(int=2),
        file_id=uuid.UUID(int=3),
        idea="An app that books climbing gyms",
        source="text",
        answers=answers,
        made_at=made_at,
        expires_at=made_at + timedelta(hours=24),
    )


def test_the_same_answers_make_the_same_zip_bytes_so_a_retried_store_is_harmless() -> None:
    made_at = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    first = zip_package(package_entries(package(made_at)), made_at)
    assert zip_package(package_entries(package(made_at)), made_at) == first
    later = made_at + timedelta(minutes=1)
    assert zip_package(package_entries(package(later)), later) != first


def test_the_readme_says_who_made_each_part_and_what_it_cost_to_the_micro_dollar() -> None:
    readme = package_entries(package(datetime(2026, 3, 1, tzinfo=UTC)))["README.md"]
    assert "| code | `openai:gpt-test` | $0.008755 |" in readme
    assert "Total cost of the AI calls: $0.043775." in readme  # five agents at $0.008755
    assert "offline template" not in readme


def test_files_given_back_as_fenced_blocks_read_back_as_they_were_even_with_fences_inside() -> None:
    files = {
        "README.md": "# Use\n\n```sh\npython main.py\n```\n",
        "app/main.py": 'print("````")\n',
        "Dockerfile": "FROM python:3.12\n",
        "empty.txt": "",
    }
    assert code_files(fenced(files)) == files
