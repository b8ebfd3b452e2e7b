"""Debian's docker-registry on 127.0.0.1, a free port, a temporary storage root."""

from __future__ import annotations

import contextlib
import http.client
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REGISTRY = shutil.which("docker-registry")
ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bcrypt_htpasswd(user: str, password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n"


@dataclass
class Registry:
    host: str
    storage: Path
    process: subprocess.Popen[bytes]

    def blob_data(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return (self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart
                / "data")

    def status(self, path: str, method: str = "GET") -> int:
        conn = http.client.HTTPConnection(self.host, timeout=5)
        try:
            conn.request(method, path, headers={"Accept": ACCEPT})
            return conn.getresponse().status
        finally:
            conn.close()


def _tls_ready(host: str) -> bool:
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(host, timeout=5, context=ctx)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status in (200, 401)
    finally:
        conn.close()


@contextlib.contextmanager
def run_registry(workdir: Path, htpasswd: str = "", tls: bool = False) -> Iterator[Registry]:
    """A registry serving `workdir/storage`; with `tls`, HTTPS with a self-signed cert."""
    assert REGISTRY, "docker-registry is not installed"
    port = free_port()
    storage = workdir / "storage"
    storage.mkdir(parents=True)
    auth = ""
    if htpasswd:
        (workdir / "htpasswd").write_text(htpasswd)
        auth = f"auth:\n  htpasswd:\n    realm: berth-test\n    path: {workdir / 'htpasswd'}\n"
    tls_conf = ""
    if tls:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(workdir / "key.pem"), "-out", str(workdir / "cert.pem")],
                       check=True, capture_output=True)
        tls_conf = (f"  tls:\n    certificate: {workdir / 'cert.pem'}\n"
                    f"    key: {workdir / 'key.pem'}\n")
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + tls_conf + auth
    )
    log = open(workdir / "registry.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    reg = Registry(f"127.0.0.1:{port}", storage, proc)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if _tls_ready(reg.host) if tls else reg.status("/v2/") in (200, 401):
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not start: "
                                   + (workdir / "registry.log").read_text()[-2000:])
            time.sleep(0.05)
        yield reg
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
