"""The domains rules, one module per domain: routes call these, these call the database and Temporal."""
