"""Fetches the page from this suite's own server, on the port ptest leased to its environment."""

import os
import urllib.request

port = int(os.environ["PTEST_PORT_HTTP"])
with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as answer:
    body = answer.read().decode()
assert "served by a ptest service" in body, body
print(f"suite {os.environ['GREETING']}: server on port {port} answered")
