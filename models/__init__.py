"""Tables (models.tables, never sent through Temporal), API shapes (models.api) and Temporal messages
(models.messages), kept apart so that changing the API never changes what a running workflow replays."""
