"""A registry client for the OCI distribution spec (docker registry API v2).

Pull: the manifest (index → linux/amd64 manifest, OCI or Docker schema 2), then config
and layers in parallel into a content store, each verified by its digest; a blob
already in the store is skipped and a partly written one resumes with a Range request.
The manifests and the image record are written last, so a failed pull names nothing.
Push: blobs first (a HEAD to skip what the registry has, a cross-repository mount when
the blob came from another repository of the same registry, else a monolithic or a
chunked upload), then manifests by digest and the target by tag.

Auth: Bearer tokens (from the WWW-Authenticate challenge, with basic credentials if
any) and basic auth. Plain HTTP for hosts in `plain_http`; `insecure` hosts get HTTPS
without certificate checks and fall back to HTTP.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import http.client
import json
import logging
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shim.content.api import ContentAPI, ContentWriter
from shim.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    ShimError,
    Unavailable,
)
from shim.images.export import export_target
from shim.images.oci import (
    DEFAULT_PLATFORM,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEXES,
    MANIFESTS,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    Platform,
    load_json,
    media_type_of,
    select_platform,
)
from shim.images.progress import ProgressEvent, ProgressFn, Status, no_progress
from shim.images.reference import DEFAULT_DOMAIN, Reference, parse_reference
from shim.images.resolve import children
from shim.images.store import Image, ImageStoreAPI

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
LABEL_SOURCE = "berth.distribution.source."
CHUNK = 1 << 20
DEFAULT_CHUNK_UPLOAD = 32 << 20
MAX_MANIFEST = 4 << 20
USER_AGENT = "berth/0.1"


class RegistryError(ShimError):
    """The registry answered something we cannot use; the message has method, URL, status."""

    code = FailedPrecondition.code


class AuthenticationError(RegistryError):
    """The registry wants credentials we do not have, or refused the ones we sent."""


class DigestMismatch(RegistryError):
    """What the registry sent does not hash to the digest that named it."""


@dataclass
class PullResult:
    image: Image
    manifest: Manifest
    bytes_downloaded: int = 0
    bytes_resumed: int = 0
    """Bytes that were already in the store from an interrupted pull and not fetched again."""
    blobs_skipped: int = 0


@dataclass
class PushResult:
    target: Descriptor
    uploaded: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def load_docker_credentials(path: Path | None = None) -> dict[str, tuple[str, str]]:
    """host → (user, password) from a docker config.json's `auths` (inline auth only)."""
    path = path or Path.home() / ".docker" / "config.json"
    try:
        auths = json.loads(path.read_text()).get("auths") or {}
    except (FileNotFoundError, ValueError):
        return {}
    out = {}
    for host, entry in auths.items():
        raw = (entry or {}).get("auth")
        if raw:
            user, _, password = base64.b64decode(raw).decode().partition(":")
            host = urllib.parse.urlparse(host).netloc or host
            out[host.removesuffix("/v1/").rstrip("/")] = (user, password)
    return out


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


class _Response:
    """A response with its connection; closes both."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 url: str) -> None:
        self.conn = conn
        self.resp = resp
        self.url = url
        self.status = resp.status

    def header(self, name: str) -> str:
        return self.resp.getheader(name) or ""

    def read(self, n: int = -1) -> bytes:
        return self.resp.read(n) if n >= 0 else self.resp.read()

    def read_limited(self, limit: int) -> bytes:
        data = self.resp.read(limit + 1)
        if len(data) > limit:
            raise RegistryError(f"GET {self.url}: manifest larger than {limit} bytes")
        return data

    def close(self) -> None:
        self.resp.close()
        self.conn.close()

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RegistryClient:
    """Talks to registries; thread-safe (tokens are cached under a lock)."""

    def __init__(self, *, plain_http: Iterable[str] | bool = (), insecure: Iterable[str] = (),
                 credentials: dict[str, tuple[str, str]] | None = None, timeout: float = 60,
                 max_workers: int = 3, chunk_size: int = DEFAULT_CHUNK_UPLOAD) -> None:
        self.plain_http = plain_http if isinstance(plain_http, bool) else set(plain_http)
        self.insecure = set(insecure)
        self.credentials = dict(credentials or {})
        self.timeout = timeout
        self.max_workers = max_workers
        self.chunk_size = chunk_size
        self._tokens: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._scheme: dict[str, str] = {}

    # -- HTTP ----------------------------------------------------------------------------

    def _base(self, host: str) -> str:
        api = "registry-1.docker.io" if host == DEFAULT_DOMAIN else host
        plain = self.plain_http
        if plain is True or (isinstance(plain, set) and host in plain):
            return f"http://{api}"
        return f"{self._scheme.get(host, 'https')}://{api}"

    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urllib.parse.urlsplit(url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        if parts.scheme == "https":
            ctx = ssl.create_default_context()
            host = parts.hostname or ""
            if any(host == h.split(":")[0] for h in self.insecure):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(parts.netloc, timeout=self.timeout,
                                               context=ctx), path
        return http.client.HTTPConnection(parts.netloc, timeout=self.timeout), path

    def _send(self, method: str, url: str, headers: dict[str, str],
              body: bytes | Iterator[bytes] | None) -> _Response:
        conn, path = self._connect(url)
        try:
            hdrs = {"User-Agent": USER_AGENT, **headers}
            if isinstance(body, bytes) or body is None:
                if method in ("PUT", "POST", "PATCH"):
                    hdrs.setdefault("Content-Length", str(len(body or b"")))
                conn.request(method, path, body=body, headers=hdrs)
            else:
                conn.putrequest(method, path, skip_accept_encoding=True)
                for k, v in hdrs.items():
                    conn.putheader(k, v)
                conn.endheaders()
                for chunk in body:
                    conn.send(chunk)
            return _Response(conn, conn.getresponse(), url)
        except BaseException:
            conn.close()
            raise

    def request(self, ref: Reference, method: str, path: str, *, headers: dict[str, str] | None
                = None, body: bytes | Iterator[bytes] | None = None, push: bool = False,
                absolute_url: str = "") -> _Response:
        """One request to `ref`'s registry with auth and redirects; the open response."""
        host = ref.domain
        scope = f"repository:{ref.path}:{'pull,push' if push else 'pull'}"
        url = absolute_url or self._base(host) + path
        headers = dict(headers or {})
        for attempt in range(6):
            auth = self._auth_header(host, scope)
            send_headers = dict(headers)
            if auth and urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(
                    self._base(host)).netloc:
                send_headers["Authorization"] = auth
            try:
                resp = self._send(method, url, send_headers, body)
            except ssl.SSLError as exc:
                if host in self.insecure and url.startswith("https://"):
                    self._scheme[host] = "http"
                    url = "http://" + url[len("https://"):]
                    continue
                raise RegistryError(f"{method} {url}: TLS failed ({exc}); for a registry "
                                    "with a self-signed certificate use insecure, for one "
                                    "without TLS plain HTTP") from exc
            except OSError as exc:
                raise RegistryError(f"{method} {url}: {exc}") from exc
            if resp.status == 401 and attempt < 2 and not isinstance(body, Iterator):
                challenge = resp.header("WWW-Authenticate")
                resp.close()
                self._authenticate(host, scope, challenge, url,
                                   send_headers.get("Authorization", ""))
                continue
            if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                location = resp.header("Location")
                resp.close()
                url = urllib.parse.urljoin(url, location)
                continue
            return resp
        raise RegistryError(f"{method} {url}: too many redirects or auth rounds")

    def _auth_header(self, host: str, scope: str) -> str:
        with self._lock:
            token = self._tokens.get((host, scope)) or self._tokens.get((host, "*"))
        return token or ""

    def _basic(self, host: str) -> str:
        creds = self.credentials.get(host)
        if not creds:
            return ""
        return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()

    def _authenticate(self, host: str, scope: str, challenge: str, url: str,
                      sent: str) -> None:
        """Get what the challenge asks for; `sent` is the Authorization that was refused."""
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            basic = self._basic(host)
            if not basic:
                raise AuthenticationError(f"{url}: registry {host} needs credentials "
                                          "(basic auth) and none are configured")
            if sent == basic:
                raise AuthenticationError(f"{url}: registry {host} refused the credentials")
            with self._lock:
                self._tokens[(host, "*")] = basic
            return
        if scheme != "bearer" or "realm" not in params:
            raise AuthenticationError(f"{url}: unsupported auth challenge {challenge!r}")
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        token_url = params["realm"] + "?" + urllib.parse.urlencode(
            {k: v for k, v in query.items() if v})
        headers = {}
        basic = self._basic(host)
        if basic:
            headers["Authorization"] = basic
        try:
            resp = self._send("GET", token_url, headers, None)
        except OSError as exc:
            raise AuthenticationError(f"token service {params['realm']}: {exc}") from exc
        with resp:
            if resp.status != 200:
                raise AuthenticationError(f"token service {params['realm']} answered "
                                          f"{resp.status} for {host} scope {query['scope']}")
            data = load_json(resp.read(), f"token from {params['realm']}")
        token = data.get("token") or data.get("access_token")
        if not token:
            raise AuthenticationError(f"token service {params['realm']} sent no token")
        with self._lock:
            self._tokens[(host, scope)] = f"Bearer {token}"

    @staticmethod
    def _fail(resp: _Response, what: str) -> ShimError:
        body = resp.read(4096).decode(errors="replace").strip()
        resp.close()
        msg = f"{what}: {resp.status} {resp.resp.reason} from {resp.url}: {body}"
        if resp.status == 404:
            return NotFound(msg)
        if resp.status in (401, 403):
            return AuthenticationError(msg)
        return RegistryError(msg)

    # -- pull ----------------------------------------------------------------------------

    def fetch_manifest(self, ref: Reference, obj: str) -> tuple[Descriptor, bytes]:
        """A manifest or index by tag or digest, checked against its digest."""
        resp = self.request(ref, "GET", f"/v2/{ref.path}/manifests/{obj}",
                            headers={"Accept": MANIFEST_ACCEPT})
        with resp:
            if resp.status != 200:
                raise self._fail(resp, f"manifest {ref.name}:{obj}")
            data = resp.read_limited(MAX_MANIFEST)
            ctype = resp.header("Content-Type").split(";")[0].strip()
            header_digest = resp.header("Docker-Content-Digest")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        want = obj if obj.startswith("sha256:") else header_digest
        if want and want != digest:
            raise DigestMismatch(f"manifest {ref.name}:{obj}: registry sent content with "
                                 f"digest {digest}, expected {want}")
        mt = media_type_of(load_json(data, f"manifest {ref.name}:{obj}"),
                           ctype if ctype in INDEXES | MANIFESTS else "")
        return Descriptor(mt, digest, len(data)), data

    def resolve(self, ref: Reference) -> Descriptor:
        return self.fetch_manifest(ref, ref.object)[0]

    def fetch_blob(self, content: ContentAPI, ref: Reference, desc: Descriptor,
                   progress: ProgressFn, kind: str = "layer") -> tuple[int, int]:
        """Download one blob into `content`, resuming; (bytes fetched, bytes resumed)."""
        if content.exists(desc.digest):
            progress(ProgressEvent(Status.EXISTS, desc.digest, desc.size, desc.size, kind))
            return 0, 0
        w = self._open_ingest(content, desc)
        if w is None:
            progress(ProgressEvent(Status.EXISTS, desc.digest, desc.size, desc.size, kind))
            return 0, 0
        try:
            offset = w.offset
            if offset >= desc.size:
                w.truncate(0)
                offset = 0
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            resp = self.request(ref, "GET", f"/v2/{ref.path}/blobs/{desc.digest}",
                                headers=headers)
            with resp:
                if resp.status == 200 and offset:
                    w.truncate(0)
                    offset = 0
                elif resp.status not in (200, 206):
                    raise self._fail(resp, f"blob {desc.digest}")
                resumed = offset
                current = offset
                progress(ProgressEvent(Status.DOWNLOADING, desc.digest, current, desc.size, kind))
                last = current
                while chunk := resp.read(CHUNK):
                    w.write(chunk)
                    current += len(chunk)
                    if current > desc.size:
                        break
                    if current - last >= CHUNK or current == desc.size:
                        progress(ProgressEvent(Status.DOWNLOADING, desc.digest, current,
                                               desc.size, kind))
                        last = current
            progress(ProgressEvent(Status.VERIFYING, desc.digest, current, desc.size, kind))
            try:
                w.commit(desc.size, desc.digest)
            except FailedPrecondition as exc:
                raise DigestMismatch(f"blob {desc.digest} from {ref.name}: {exc}") from None
            progress(ProgressEvent(Status.DOWNLOADED, desc.digest, desc.size, desc.size, kind))
            return current - resumed, resumed
        finally:
            w.close()

    def _open_ingest(self, content: ContentAPI, desc: Descriptor) -> ContentWriter | None:
        """The blob's ingest, or None once it exists (another pull may be writing it:
        then wait for that one rather than fetch the same bytes twice)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return content.writer(f"pull-{desc.digest}", desc.size, desc.digest)
            except AlreadyExists:
                return None
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                if content.exists(desc.digest):
                    return None

    def pull(self, content: ContentAPI, images: ImageStoreAPI, namespace: str, ref_str: str, *,
             platform: Platform = DEFAULT_PLATFORM,
             progress: ProgressFn = no_progress) -> PullResult:
        """Pull `ref_str` into the stores; the image record is written only on success."""
        ref = parse_reference(ref_str)
        progress(ProgressEvent(Status.RESOLVING, kind="image", detail=str(ref)))
        top, top_data = self.fetch_manifest(ref, ref.object)
        manifests = [(top, top_data)]
        desc, data = top, top_data
        if top.media_type in INDEXES:
            chosen = select_platform(load_json(top_data, f"index {top.digest}"), top.digest,
                                     platform)
            desc, data = self.fetch_manifest(ref, chosen.digest)
            manifests.append((desc, data))
        manifest = Manifest.parse(desc, data)
        blobs = [(manifest.config, "config")] + [(layer, "layer") for layer in manifest.layers]
        for layer, _ in blobs[1:]:
            progress(ProgressEvent(Status.WAITING, layer.digest, 0, layer.size))
        fetched = resumed = skipped = 0
        with concurrent.futures.ThreadPoolExecutor(self.max_workers) as pool:
            futures = {pool.submit(self.fetch_blob, content, ref, b, progress, kind): b
                       for b, kind in blobs}
            errors = []
            for fut in concurrent.futures.as_completed(futures):
                try:
                    f, r = fut.result()
                except Exception as exc:
                    errors.append(exc)
                    continue
                fetched += f
                resumed += r
                skipped += 1 if f == 0 and r == 0 else 0
            if errors:
                raise errors[0]
        source = {LABEL_SOURCE + ref.domain: ref.path}
        for b, _ in blobs:
            content_update(content, b.digest, source)
        for d, raw in reversed(manifests):
            content.write_blob(raw, d.digest, labels=source)
        name = str(ref)
        image = images.put(namespace, Image(name, top))
        progress(ProgressEvent(Status.DONE, top.digest, kind="image", detail=name))
        return PullResult(image, manifest, fetched, resumed, skipped)

    # -- push ----------------------------------------------------------------------------

    def blob_exists(self, ref: Reference, digest: str) -> bool:
        with self.request(ref, "HEAD", f"/v2/{ref.path}/blobs/{digest}", push=True) as resp:
            return resp.status == 200

    def _start_upload(self, ref: Reference, desc: Descriptor, mount_from: str) -> str:
        """POST an upload (or a mount); the upload URL, or "" when the mount worked."""
        path = f"/v2/{ref.path}/blobs/uploads/"
        if mount_from:
            path += "?" + urllib.parse.urlencode({"mount": desc.digest, "from": mount_from})
        with self.request(ref, "POST", path, push=True) as resp:
            if resp.status == 201 and mount_from:
                return ""
            if resp.status != 202:
                raise self._fail(resp, f"start upload of {desc.digest}")
            location = resp.header("Location")
        if not location:
            raise RegistryError(f"start upload of {desc.digest}: no Location in the answer")
        return urllib.parse.urljoin(self._base(ref.domain) + path, location)

    @staticmethod
    def _with_digest(url: str, digest: str) -> str:
        return url + ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})

    def upload_blob(self, content: ContentAPI, ref: Reference, desc: Descriptor,
                    progress: ProgressFn, kind: str = "layer", mount_from: str = "",
                    chunked: bool | None = None) -> str:
        """Push one blob; "exists", "mounted" or "uploaded"."""
        if self.blob_exists(ref, desc.digest):
            progress(ProgressEvent(Status.EXISTS, desc.digest, desc.size, desc.size, kind))
            return "exists"
        location = self._start_upload(ref, desc, mount_from)
        if not location:
            progress(ProgressEvent(Status.MOUNTED, desc.digest, desc.size, desc.size, kind,
                                   detail=mount_from))
            return "mounted"
        if chunked is None:
            chunked = desc.size > self.chunk_size
        sent = 0

        def counted(chunks: Iterator[bytes]) -> Iterator[bytes]:
            nonlocal sent
            for chunk in chunks:
                yield chunk
                sent += len(chunk)
                progress(ProgressEvent(Status.PUSHING, desc.digest, sent, desc.size, kind))

        if not chunked:
            with self.request(ref, "PUT", "", absolute_url=self._with_digest(location, desc.digest),
                              headers={"Content-Type": "application/octet-stream",
                                       "Content-Length": str(desc.size)},
                              body=counted(content.read(desc.digest)), push=True) as resp:
                if resp.status != 201:
                    raise self._fail(resp, f"upload of {desc.digest}")
        else:
            offset = 0
            while offset < desc.size:
                size = min(self.chunk_size, desc.size - offset)
                headers = {"Content-Type": "application/octet-stream",
                           "Content-Length": str(size),
                           "Content-Range": f"{offset}-{offset + size - 1}"}
                with self.request(ref, "PATCH", "", absolute_url=location, headers=headers,
                                  body=counted(content.read(desc.digest, offset, size)),
                                  push=True) as resp:
                    if resp.status != 202:
                        raise self._fail(resp, f"chunk {offset}-{offset + size - 1} of "
                                         f"{desc.digest}")
                    location = urllib.parse.urljoin(location, resp.header("Location") or location)
                offset += size
            with self.request(ref, "PUT", "", absolute_url=self._with_digest(location, desc.digest),
                              body=b"", push=True) as resp:
                if resp.status != 201:
                    raise self._fail(resp, f"finishing the upload of {desc.digest}")
        progress(ProgressEvent(Status.PUSHED, desc.digest, desc.size, desc.size, kind))
        return "uploaded"

    def put_manifest(self, ref: Reference, obj: str, desc: Descriptor, data: bytes) -> None:
        with self.request(ref, "PUT", f"/v2/{ref.path}/manifests/{obj}", body=data, push=True,
                          headers={"Content-Type": desc.media_type}) as resp:
            if resp.status != 201:
                raise self._fail(resp, f"manifest put {ref.name}:{obj}")
            got = resp.header("Docker-Content-Digest")
        if got and got != desc.digest:
            raise DigestMismatch(f"manifest put {ref.name}:{obj}: registry stored {got}, "
                                 f"we sent {desc.digest}")

    def push(self, content: ContentAPI, images: ImageStoreAPI, namespace: str, ref_str: str, *,
             local_name: str = "", progress: ProgressFn = no_progress,
             chunked: bool | None = None) -> PushResult:
        """Push the image `local_name` (default: `ref_str`) to `ref_str`."""
        ref = parse_reference(ref_str)
        image = images.get(namespace, str(parse_reference(local_name or ref_str)))
        target = export_target(content, image.target)
        result = PushResult(target)
        manifests: list[Descriptor] = []
        blobs: dict[str, tuple[Descriptor, str]] = {}
        stack = [target]
        while stack:
            d = stack.pop()
            if d.media_type in INDEXES | MANIFESTS:
                manifests.append(d)
                for i, c in enumerate(children(content, d)):
                    if d.media_type in INDEXES:
                        stack.append(c)
                    else:
                        blobs.setdefault(c.digest, (c, "config" if i == 0 else "layer"))
        with concurrent.futures.ThreadPoolExecutor(self.max_workers) as pool:
            futures = {}
            for d, kind in blobs.values():
                info_labels = content.info(d.digest).labels
                src = info_labels.get(LABEL_SOURCE + ref.domain, "")
                mount_from = src if src and src != ref.path else ""
                futures[pool.submit(self.upload_blob, content, ref, d, progress, kind,
                                    mount_from, chunked)] = d
            for fut in concurrent.futures.as_completed(futures):
                outcome = fut.result()
                digest = futures[fut].digest
                {"exists": result.existing, "mounted": result.mounted,
                 "uploaded": result.uploaded}[outcome].append(digest)
        for d in reversed(manifests):
            data = content.read_bytes(d.digest)
            obj = ref.tag if d.digest == target.digest and ref.tag else d.digest
            self.put_manifest(ref, obj, d, data)
        source = {LABEL_SOURCE + ref.domain: ref.path}
        for d, _ in blobs.values():
            content_update(content, d.digest, source)
        progress(ProgressEvent(Status.DONE, target.digest, kind="image", detail=str(ref)))
        return result


def content_update(content: ContentAPI, digest: str, labels: dict[str, str]) -> None:
    """Label a blob if the store can (the source repository, for cross-repo mounts)."""
    update = getattr(content, "update", None)
    if update is not None:
        try:
            update(digest, labels)
        except ShimError as exc:
            log.debug("cannot label %s: %s", digest, exc)


