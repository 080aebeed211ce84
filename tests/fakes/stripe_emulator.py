"""localstripe (PyPI), the stateful fake Stripe server, run as a subprocess on 127.0.0.1.

Run as a script it serves localstripe's own aiohttp app on a listening socket handed over by the parent,
so the port is free by construction. Two adjustments, both outside what the tests check:
- localstripe pickles its whole store to /tmp/localstripe.pickle after every change; that is switched off
  (every run starts empty, and two test runs on one machine must not share a file);
- its own `start()` listens on every interface ('::'); serving the app on our socket keeps it on loopback.

What localstripe does not do, and the tests work around in the open (see tests/payments/test_payments_stripe.py):
it ignores the Idempotency-Key header; it sends no `payment_intent.canceled` or `charge.refunded` events
(the tests sign those payloads themselves with the webhook secret, exactly as Stripe signs); it refuses
`payment_method` on confirm (the tests attach the payment method first, then confirm).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

SECRET_KEY = "sk_test_statex_localstripe"


def main(fd: int) -> None:
    from aiohttp import web
    from localstripe import resources

    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    from localstripe.server import app

    web.run_app(app, sock=socket.socket(fileno=fd), print=None, access_log=None)


@contextmanager
def running_localstripe() -> Iterator[str]:
    """Start localstripe, wait until it answers, yield its base URL; stop it afterwards."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    host, port = listener.getsockname()
    process = subprocess.Popen(
        [sys.executable, __file__, str(listener.fileno())], pass_fds=[listener.fileno()], stdin=subprocess.DEVNULL
    )
    listener.close()  # the child holds its own copy
    url = f"http://{host}:{port}"
    try:
        _wait_until_up(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/v1/balance", auth=(SECRET_KEY, ""), timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"localstripe did not answer within {within}s")


if __name__ == "__main__":
    main(int(sys.argv[1]))
