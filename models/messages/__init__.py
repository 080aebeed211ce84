"""What crosses Temporal: workflow and activity inputs, outputs, signals and queries.

Plain pydantic (never a `table=True` model); these modules import nothing but pydantic and
models.enums, so workflows can import them inside the sandbox. Changing a field here changes what
running workflows replay: add optional fields, never rename or remove one."""
