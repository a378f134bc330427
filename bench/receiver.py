"""A webhook receiver for benchmarks: answers 200 at once, or hangs on /hang (a broken merchant)."""
import time


def app(environ, start_response):
    environ["wsgi.input"].read()
    if environ.get("PATH_INFO", "").startswith("/hang"):
        time.sleep(30)  # the broken endpoint under test; the gateway's 5 s timeout cuts it off
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]
