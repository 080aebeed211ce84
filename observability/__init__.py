"""What operators see of the running service: logs, metrics, traces, error reports, and the request ids that
tie them together across the API and the worker. Below every other layer: anything may import it."""
