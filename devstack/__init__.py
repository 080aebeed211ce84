"""The embedded stack of `statex run` (`make run`): the supervisor that starts, watches and stops the Temporal dev
server, the worker and the API; the local Stripe emulator; and `statex smoke`, which drives a running stack as a
frontend does. Production runs the parts one by one (`statex api`, `statex worker`) and needs none of this."""
