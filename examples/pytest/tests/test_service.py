"""A web server started as a service on a leased port, ready before the test runs."""

import urllib.request

import pytest


@pytest.mark.ptest_env(network="host", ports=["http"])
@pytest.mark.ptest_service(
    "echo served > index.html && exec python3 -m http.server $PTEST_PORT_HTTP --bind 127.0.0.1",
    name="web",
    ready_port="http",
)
def test_server_answers_on_its_leased_port(ptest_env, ptest_service):
    port = ptest_env.ports["http"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as response:
        assert response.read() == b"served\n"
    assert ptest_service.is_alive()
