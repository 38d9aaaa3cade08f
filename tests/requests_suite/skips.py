"""requests' tests skipped on httpcore.RequestsAdapter, each with its reason.

Keys are pytest node ids (a name without ``[...]`` covers all its cases).
"""

from __future__ import annotations

ALWAYS_SKIPS: dict[str, str] = {
    # Not run with either adapter: they connect to 10.255.255.1 (requests'
    # TARPIT) to provoke a connect timeout, and this machine may send
    # traffic to loopback only. tests/test_requests_adapter.py covers connect
    # timeouts against a loopback listener whose accept queue is full.
    "tests/test_requests.py::TestTimeout::test_connect_timeout": "connects to 10.255.255.1",
    "tests/test_requests.py::TestTimeout::test_total_timeout_connect": "connects to 10.255.255.1",
}

_POOLMANAGER = (
    "asserts on HTTPAdapter.poolmanager.pools, urllib3's pool objects (the requests"
    " before that assertion pass; tests/test_requests_adapter.py checks that verify"
    " settings get distinct clients)"
)

ADAPTER_SKIPS: dict[str, str] = {
    # urllib3 internals: attributes of requests' HTTPAdapter that hold urllib3 objects.
    "tests/test_requests.py::TestRequests::test_session_close_proxy_clear": (
        "mocks HTTPAdapter.proxy_manager (urllib3 ProxyManager objects) and checks"
        " that close() calls their clear()"
    ),
    "tests/test_requests.py::TestPreparingURLs::"
    "test_different_connection_pool_for_tls_settings_verify_True": _POOLMANAGER,
    "tests/test_requests.py::TestPreparingURLs::"
    "test_different_connection_pool_for_tls_settings_verify_bundle_expired_cert": _POOLMANAGER,
    "tests/test_requests.py::TestPreparingURLs::"
    "test_different_connection_pool_for_tls_settings_verify_bundle_unexpired_cert": _POOLMANAGER,
    # http.client's parser: it takes EOF inside the response head for its end,
    # then fails reading the chunked body (ChunkedEncodingError). httpcore (h11)
    # reports a head cut short as the connection closing before a response
    # (ConnectionError), which is what requests raises when no head arrives.
    "tests/test_lowlevel.py::test_chunked_encoding_error": (
        "http.client accepts a response head cut short by EOF; h11 does not"
    ),
    # PySocks sends its SOCKS5 greeting before it resolves a socks5:// target
    # name locally; httpcore resolves it first. httpbin.org does not resolve on
    # this machine (no network), so the fake proxy sees a connection but no
    # bytes. With DNS, the greeting reaches the proxy as with urllib3.
    "tests/test_lowlevel.py::test_use_proxy_from_environment": (
        "needs DNS for httpbin.org: httpcore resolves a socks5:// target before"
        " the SOCKS greeting, PySocks after it"
    ),
}
