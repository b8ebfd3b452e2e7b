"""Bearer-token auth: a token service and an auth gate in front of the real registry.

The gate answers 401 with a `WWW-Authenticate: Bearer realm=...,service=...,scope=...`
challenge like Docker Hub does, issues tokens only for basic credentials it knows and
only with the scope asked, and passes authorized requests through to docker-registry.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import threading
import urllib.parse

import pytest

from shim.content import ContentStore
from shim.images.build import build_busybox
from shim.images.distribution import AuthenticationError, RegistryClient
from shim.images.store import ImageStore
from tests.compat.registry_support import REGISTRY, free_port, run_registry

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(REGISTRY is None, reason="docker-registry not installed")]
NS = "default"
USER, PASSWORD = "berth", "t0ken-pass"


def make_gate(upstream: str, port: int, log: list[str]):
    issued: dict[str, str] = {}

    class Gate(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, status, headers=None, body=b""):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _token(self):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != want:
                return self._reply(401)
            scope = query.get("scope", [""])[0]
            token = f"tok{len(issued)}"
            issued[token] = scope
            log.append(f"token {scope}")
            self._reply(200, {"Content-Type": "application/json"},
                        json.dumps({"token": token}).encode())

        def _proxy(self):
            path = urllib.parse.urlsplit(self.path).path
            repo = path.split("/v2/", 1)[-1].split("/blobs/")[0].split("/manifests/")[0]
            action = "pull" if self.command in ("GET", "HEAD") else "pull,push"
            auth = self.headers.get("Authorization", "")
            scope = issued.get(auth.removeprefix("Bearer "), "")
            needed = f"repository:{repo}:"
            if path != "/v2/" and not (scope.startswith(needed)
                                       and set(action.split(",")) <= set(
                                           scope[len(needed):].split(","))):
                challenge = (f'Bearer realm="http://127.0.0.1:{port}/token",'
                             f'service="gate",scope="repository:{repo}:{action}"')
                return self._reply(401, {"WWW-Authenticate": challenge})
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(upstream, timeout=30)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("authorization", "host", "connection")}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = {}
            for k, v in resp.getheaders():
                if k.lower() in ("content-length", "connection", "transfer-encoding"):
                    continue
                out[k] = v.replace(upstream, f"127.0.0.1:{port}") if k == "Location" else v
            self.send_response(resp.status)
            for k, v in out.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(
                int(resp.getheader("Content-Length") or len(data))
                if self.command == "HEAD" else len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        def do_GET(self):
            if self.path.startswith("/token"):
                return self._token()
            return self._proxy()

        do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _proxy

    return Gate


@pytest.fixture
def gated(tmp_path):
    with run_registry(tmp_path / "registry") as reg:
        port = free_port()
        log: list[str] = []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                                 make_gate(reg.host, port, log))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"127.0.0.1:{port}", log
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def test_bearer_token_push_and_pull(gated, tmp_path):
    host, log = gated
    content, images = ContentStore(tmp_path / "a"), ImageStore(tmp_path / "a")
    build_busybox(content, images, NS)
    ref = f"{host}/secure/busybox:1"

    with pytest.raises(AuthenticationError, match="token service"):
        RegistryClient(plain_http={host}).push(content, images, NS, ref, local_name="busybox")

    creds = {host: (USER, PASSWORD)}
    pushed = RegistryClient(plain_http={host}, credentials=creds).push(
        content, images, NS, ref, local_name="busybox")
    assert "token repository:secure/busybox:pull,push" in log

    c2, i2 = ContentStore(tmp_path / "b"), ImageStore(tmp_path / "b")
    result = RegistryClient(plain_http={host}, credentials=creds).pull(c2, i2, NS, ref)
    assert result.image.target.digest == pushed.target.digest
    assert "token repository:secure/busybox:pull" in log
