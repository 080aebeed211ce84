"""Tables (models.tables, never sent through Temporal), API shapes (models.api) and Temporal messages
(models.messages), kept apart so that changing the API never changes what a running workflow replays; and the
plain data every layer above shares: the prototype agents' prompts (models.prompts) and Temporal's search
attributes (models.search_attributes)."""
