"""Local servers that speak outside providers' real wire protocols, for the tests (127.0.0.1 only)."""
