"""SQLModel tables (never sent through Temporal) and the pydantic schemas that are."""
