"""``vitrine review CATALOG_DIR``: a small local web server for reviewing a catalog.

Standard library only (`http.server`), one thread per request. What it does and refuses:

- It binds ``127.0.0.1`` by default. Whatever the bind address (``0.0.0.0`` included), a request is
  served only when its ``Host`` header is ``127.0.0.1``, ``localhost`` or ``[::1]``, the bound address
  itself, or a name passed with ``--allow-host`` (``allowed_hosts``), at the server's port: the
  DNS-rebinding defence. A decision's ``Origin`` (when sent) must name an allowed host too. Bind another
  address only on a trusted network.
- Limits: a connection idle for `IDLE_TIMEOUT_S` seconds is closed; at most `MAX_CONNECTIONS`
  connections are served at once (one thread each), further ones get ``503`` and are closed.
- It reads files only inside the catalog: ``/files/<sku>/<path>`` and ``/thumb/<sku>/<path>`` take
  the SKU and a relative path, refuse ``..``, absolute paths, hidden segments (``.locks``, ``.staging``)
  and anything that resolves outside the catalog (symlinks included), and serve only pictures and JSON.
- It writes only through `pipelines.catalog.review.record_decision`: the SKU's manifest under the SKU lock and
  ``CATALOG/_review/decisions.jsonl``.
- A decision is a ``POST /api/decision`` with a JSON body, ``Content-Type: application/json`` and the
  header ``X-Vitrine-Token`` carrying the per-server random token embedded in the page. Another site
  can neither read the token (same-origin policy) nor send that header without a CORS preflight, which
  this server never grants: that is the CSRF defence. A foreign ``Origin`` header is refused too.
- Every response carries a strict Content-Security-Policy; the page's text is escaped
  (`pipelines.review_ui.page`).

Routes: ``GET /`` (one page of SKUs: ``?status=``, ``engine=``, ``marketplace=``, ``q=``, ``page=``,
``per_page=``; see `pipelines.catalog.index`), ``GET /mask/<sku>`` (the mask brush) and
``GET /mask/<sku>/override.png`` (its saved override),
``GET /static/review.js|review.css``, ``GET /files/...``, ``GET /thumb/...``, ``GET /api/catalog`` (review
summary as JSON; with page/filter parameters also one page of the index), ``GET /api/edit-requests``
(pending edit requests), ``POST /api/decision``, ``POST /api/mask`` (a painted mask override; same
token/Origin/Host rules as decisions).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import ipaddress
import json
import logging
import secrets
import socket
import threading
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from PIL import Image

from pipelines.catalog.contact_sheet import load_thumbnail
from pipelines.errors import InputError
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest
from pipelines.product import validate_sku
from pipelines.catalog.review import ReviewConflictError, pending_edit_requests, record_decision, review_summary
from pipelines.catalog.index import CatalogIndex, ReviewQuery
from pipelines.review_ui.live import LIVE_SCRIPT, LIVE_STYLE, render_live_page, render_mask_page
from pipelines.review_ui.page import SERVER_CSP, THUMB_SIDE

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: Largest request body accepted, bytes.
MAX_BODY = 64 * 1024
#: Largest ``POST /api/mask`` body accepted, bytes (a base64 PNG of a painted mask).
MAX_MASK_BODY = 32 * 1024 * 1024
CONTENT_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
    ".json": "application/json; charset=utf-8",
}
#: Top-level catalog folders (besides SKUs) whose files may be served: batch reports and contact sheets.
SERVED_FOLDERS = ("_reports",)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
#: Seconds a connection may stay silent (between or inside requests) before the server closes it.
IDLE_TIMEOUT_S = 30.0
#: Connections served at once (one thread each); more get ``503 Service Unavailable``.
MAX_CONNECTIONS = 64
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Content-Length: 26\r\nRetry-After: 1\r\nConnection: close\r\n\r\n503 too many connections\r\n")


def split_host(netloc: str, default_port: int) -> tuple[str, int] | None:
    """``("name", port)`` of a ``Host`` header or an Origin's ``host[:port]``, lower-case; `None` if malformed."""
    netloc = netloc.strip().lower()
    if not netloc or any(c in netloc for c in "/@?# \t\\"):
        return None
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            return None
        name, rest = netloc[: end + 1], netloc[end + 1:]
    else:
        name, _, port_text = netloc.partition(":")
        rest = f":{port_text}" if _ else ""
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    port = int(rest[1:]) if rest else default_port
    return (name, port) if name and 0 < port < 65536 else None


class RequestError(Exception):
    """An HTTP error with a status and a message for the client."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def resolve_catalog_file(catalog: Path, rel_url_path: str) -> Path:
    """Map the URL path after ``/files/`` (percent-encoded ``<sku>/<path>``) to a file inside ``catalog``.

    Raises:
        `RequestError`: 400 for a malformed or traversing path, 404 when there is no such servable file.
    """
    raw = unquote(rel_url_path, errors="strict")
    if "\\" in raw or "\x00" in raw or raw.startswith("/"):
        raise RequestError(HTTPStatus.BAD_REQUEST, "bad path")
    parts = raw.split("/")
    if len(parts) < 2 or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise RequestError(HTTPStatus.BAD_REQUEST, "bad path")
    if parts[0] not in SERVED_FOLDERS:
        try:
            validate_sku(parts[0])
        except InputError:
            raise RequestError(HTTPStatus.BAD_REQUEST, "bad path") from None
    path = catalog.joinpath(*parts)
    if path.suffix.lower() not in CONTENT_TYPES:
        raise RequestError(HTTPStatus.NOT_FOUND, "not found")
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise RequestError(HTTPStatus.NOT_FOUND, "not found") from None
    if not real.is_relative_to(catalog) or not real.is_file():
        raise RequestError(HTTPStatus.NOT_FOUND, "not found")
    return real


@lru_cache(maxsize=512)
def _thumbnail_bytes(path: str, mtime_ns: int, size: int, max_side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(load_thumbnail(path, max_side)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


class ReviewHandler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "VitrineReview"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        logger.info("%s %s", self.address_string(), format % args)

    # -- responses ----------------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, content_type: str, *, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", SERVER_CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "private, max-age=60" if cache else "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, obj: Any) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _error(self, err: RequestError) -> None:
        if self.path.startswith("/api/"):
            self._json(err.status, {"ok": False, "error": err.message})
        else:
            self._send(err.status, f"{int(err.status)} {err.message}\n".encode(), "text/plain; charset=utf-8")

    def _check_host(self) -> None:
        host = (self.headers.get("Host") or "").lower()
        if not self.server.host_allowed(host):
            raise RequestError(HTTPStatus.FORBIDDEN, "unexpected Host header (pass the name with --allow-host)")

    # -- GET ----------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        try:
            self._check_host()
            url = urlsplit(self.path)
            path = url.path
            catalog = self.server.catalog
            if path == "/":
                try:
                    query = ReviewQuery.from_params(parse_qs(url.query))
                    page = render_live_page(catalog, self.server.index, query, token=self.server.token)
                except InputError as exc:
                    raise RequestError(HTTPStatus.BAD_REQUEST, str(exc)) from None
                self._send(HTTPStatus.OK, page.encode("utf-8"), "text/html; charset=utf-8")
            elif path.startswith("/mask/") and path.endswith("/override.png"):
                self._mask_override(path[len("/mask/"):-len("/override.png")])
            elif path.startswith("/mask/"):
                self._mask_page(path[len("/mask/"):])
            elif path == "/static/review.js":
                self._send(HTTPStatus.OK, LIVE_SCRIPT.encode(), "text/javascript; charset=utf-8", cache=True)
            elif path == "/static/review.css":
                self._send(HTTPStatus.OK, LIVE_STYLE.encode(), "text/css; charset=utf-8", cache=True)
            elif path.startswith("/files/"):
                real = resolve_catalog_file(catalog, path[len("/files/"):])
                self._send(HTTPStatus.OK, real.read_bytes(), CONTENT_TYPES[real.suffix.lower()])
            elif path.startswith("/thumb/"):
                real = resolve_catalog_file(catalog, path[len("/thumb/"):])
                if real.suffix.lower() == ".json":
                    raise RequestError(HTTPStatus.NOT_FOUND, "not a picture")
                st = real.stat()
                try:
                    data = _thumbnail_bytes(str(real), st.st_mtime_ns, st.st_size, THUMB_SIDE)
                except InputError:
                    raise RequestError(HTTPStatus.NOT_FOUND, "unreadable picture") from None
                self._send(HTTPStatus.OK, data, "image/jpeg", cache=True)
            elif path == "/favicon.ico":
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon", cache=True)
            elif path == "/api/catalog":
                self._catalog_api(parse_qs(url.query))
            elif path == "/api/edit-requests":
                self._json(HTTPStatus.OK, {"ok": True, "requests": [r.to_json() for r in pending_edit_requests(catalog)]})
            else:
                raise RequestError(HTTPStatus.NOT_FOUND, "not found")
        except RequestError as err:
            self._error(err)
        except (UnicodeDecodeError, ValueError) as exc:
            self._error(RequestError(HTTPStatus.BAD_REQUEST, f"bad request: {exc}"))

    # -- POST ---------------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802
        try:
            self._check_host()
            if urlsplit(self.path).path == "/api/mask":
                self._json(HTTPStatus.OK, self._save_mask())
                return
            if urlsplit(self.path).path != "/api/decision":
                raise RequestError(HTTPStatus.NOT_FOUND, "not found")
            body = self._read_json()
            decision = self._decide(body)
            self._json(HTTPStatus.OK, decision)
        except RequestError as err:
            self.close_connection = True  # the body may be unread: do not reuse the connection
            self._error(err)

    def _check_post_auth(self) -> None:
        """The CSRF rules of every POST: no foreign ``Origin``, the right ``X-Vitrine-Token``."""
        origin = self.headers.get("Origin")
        if origin is not None and not self.server.origin_allowed(origin):
            raise RequestError(HTTPStatus.FORBIDDEN, "cross-origin request refused")
        token = self.headers.get("X-Vitrine-Token") or ""
        if not hmac.compare_digest(token.encode(), self.server.token.encode()):
            raise RequestError(HTTPStatus.FORBIDDEN, "missing or wrong X-Vitrine-Token; reload the page")

    def _post_body(self, max_bytes: int) -> Any:
        """The JSON body of a POST, after the CSRF rules (`_check_post_auth`): ``application/json``, a
        ``Content-Length`` of at most ``max_bytes``, UTF-8 JSON; a `RequestError` otherwise."""
        self._check_post_auth()
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required") from None
        if length < 0 or length > max_bytes:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {max_bytes} bytes")
        try:
            return json.loads(self.rfile.read(length).decode("utf-8"))
        except TimeoutError:
            raise RequestError(HTTPStatus.REQUEST_TIMEOUT, "the body did not arrive in time") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None

    def _read_json(self) -> dict[str, Any]:
        body = self._post_body(MAX_BODY)
        if not isinstance(body, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        unknown = set(body) - {"sku", "output", "action", "note", "instruction", "expected_sha256"}
        if unknown:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"unknown fields: {', '.join(sorted(unknown))}")
        for key in ("sku", "output", "action"):
            if not isinstance(body.get(key), str):
                raise RequestError(HTTPStatus.BAD_REQUEST, f"{key!r} must be a string")
        return body

    def _decide(self, body: dict[str, Any]) -> dict[str, Any]:
        catalog = self.server.catalog
        try:
            d = record_decision(
                catalog, body["sku"], body["output"], body["action"], note=body.get("note"),
                instruction=body.get("instruction"), reviewer=self.server.reviewer,
                expected_sha256=body.get("expected_sha256"), source="review-server",
            )
        except ReviewConflictError as exc:
            raise RequestError(HTTPStatus.CONFLICT, str(exc)) from None
        except InputError as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, exc.message) from None
        manifest = read_manifest(catalog / d.sku / MANIFEST_NAME)
        self.server.index.refresh(d.sku)
        output_review = next(o["review"] for o in manifest["outputs"] if o["file"] == d.output)
        return {"ok": True, "decision": d.to_json(), "output_review": output_review, "sku_review": manifest["review"],
                **self._live_counts()}

    # -- the catalog-scale page's extras (pipelines.review_ui.live, pipelines.catalog.mask_edit) ----------------------
    def _live_counts(self) -> dict[str, Any]:
        """``counts`` (SKUs per status filter) and ``pending_edits``, for the page's live counts."""
        # The current scan, refreshed for the decided SKU: no rescan of the catalog per decision.
        out: dict[str, Any] = {"counts": self.server.index.query(ReviewQuery(), max_age=float("inf")).counts}
        try:
            out["pending_edits"] = len(pending_edit_requests(self.server.catalog))
        except InputError:
            pass
        return out

    def _catalog_api(self, params: dict[str, list[str]]) -> None:
        """``GET /api/catalog``: the review summary; with any of ``page``, ``per_page``, ``status``, ``q``,
        ``engine``, ``marketplace`` also ``index``, one page of compact per-SKU facts (`IndexPage.to_json`)."""
        out: dict[str, Any] = {"ok": True, **review_summary(self.server.catalog)}
        if params:
            try:
                out["index"] = self.server.index.query(ReviewQuery.from_params(params)).to_json()
            except InputError as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST, str(exc)) from None
        self._json(HTTPStatus.OK, out)

    def _mask_override(self, rel: str) -> None:
        """``GET /mask/<sku>/override.png``: the SKU's current override (the brush starts from it)."""
        from pipelines.catalog.mask_edit import existing_override

        sku = unquote(rel, errors="strict")
        try:
            validate_sku(sku)
        except InputError:
            raise RequestError(HTTPStatus.BAD_REQUEST, "bad SKU") from None
        found = existing_override(self.server.catalog, self.server.products, sku) if self.server.products else None
        if found is None:
            raise RequestError(HTTPStatus.NOT_FOUND, "no override")
        self._send(HTTPStatus.OK, found.read_bytes(), "image/png")

    def _mask_page(self, rel: str) -> None:
        from pipelines.catalog.mask_edit import existing_override

        sku = unquote(rel, errors="strict")
        try:
            validate_sku(sku)
            has = bool(self.server.products and existing_override(self.server.catalog, self.server.products, sku))
            page = render_mask_page(self.server.catalog, sku, token=self.server.token, has_override=has)
        except InputError as exc:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no mask to paint: {exc.message}") from None
        self._send(HTTPStatus.OK, page.encode("utf-8"), "text/html; charset=utf-8")

    def _save_mask(self) -> dict[str, Any]:
        """``POST /api/mask``: ``{"sku", "mask_png": base64 PNG}`` -> the override in the products folder."""
        from pipelines.catalog.mask_edit import save_mask_override

        body = self._post_body(MAX_MASK_BODY)
        if not isinstance(body, dict) or set(body) - {"sku", "mask_png"}:
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object with sku and mask_png")
        if not isinstance(body.get("sku"), str) or not isinstance(body.get("mask_png"), str):
            raise RequestError(HTTPStatus.BAD_REQUEST, "'sku' and 'mask_png' must be strings")
        if self.server.products is None:
            raise RequestError(HTTPStatus.CONFLICT, "the server does not know the products folder; restart it "
                               "with vitrine review CATALOG --products PRODUCTS_DIR")
        try:
            png = base64.b64decode(body["mask_png"], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(HTTPStatus.BAD_REQUEST, "mask_png is not base64") from None
        try:
            event = save_mask_override(self.server.catalog, self.server.products, body["sku"], png,
                                       reviewer=self.server.reviewer, source="review-server")
        except ReviewConflictError as exc:
            raise RequestError(HTTPStatus.CONFLICT, str(exc)) from None
        except InputError as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, exc.message) from None
        return {"ok": True, "event": event, "mask": f"{event['sku']}/{event['mask']}"}


def _products_root(catalog: Path, products_dir: str | Path | None) -> Path | None:
    """The products folder masks are written to: ``products_dir``, else the latest report's (or `None`)."""
    if products_dir is not None:
        p = Path(products_dir)
        if not p.is_dir():
            raise InputError("products folder not found", path=p, key="--products")
        return p.resolve()
    from pipelines.catalog.mask_edit import products_dir_from_report

    found = products_dir_from_report(catalog)
    return found.resolve() if found is not None else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ReviewServer(ThreadingHTTPServer):
    """The review server for one catalog.

    Args:
        catalog_dir (`str | Path`): the catalog root (must exist).
        host (`str`, *optional*, defaults to ``"127.0.0.1"``): address to bind.
        port (`int`, *optional*, defaults to 8765): port; 0 picks a free one (see `url`).
        reviewer (`str`, *optional*): recorded with every decision.
        token (`str`, *optional*): the CSRF token; random by default.
        allowed_hosts (`tuple[str, ...]`, *optional*): extra host names accepted in ``Host`` and ``Origin``
            headers (for a non-loopback bind, e.g. the machine's name): ``NAME`` (at the server's port) or
            ``NAME:PORT`` (behind a proxy). The loopback names and the bound address are always accepted;
            nothing else, whatever the bind address.
        idle_timeout (`float`, *optional*, defaults to `IDLE_TIMEOUT_S`): seconds before a silent
            connection is closed.
        max_connections (`int`, *optional*, defaults to `MAX_CONNECTIONS`): connections served at once.
        products_dir (`str | Path`, *optional*): the products folder ``POST /api/mask`` writes mask
            overrides into; by default the latest batch report's ``products_dir`` (masks are refused when
            neither is known).
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        catalog_dir: str | Path,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        reviewer: str | None = None,
        token: str | None = None,
        allowed_hosts: tuple[str, ...] = (),
        products_dir: str | Path | None = None,
        idle_timeout: float = IDLE_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
    ):
        for name in allowed_hosts:
            if split_host(name, DEFAULT_PORT) is None:
                raise InputError(f"{name!r} is not a host name (NAME or NAME:PORT)", key="allow-host")
        self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        catalog = Path(catalog_dir)
        if not catalog.is_dir():
            raise InputError("catalog folder not found", path=catalog)
        self.catalog = catalog.resolve()
        self.index = CatalogIndex(self.catalog)
        self.products = _products_root(self.catalog, products_dir)
        self.reviewer = reviewer
        self.token = token or secrets.token_urlsafe(32)
        self.bind_host = host
        if ":" in host.strip("[]"):
            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), ReviewHandler)
        self.port = self.server_address[1]
        bound = host.lower().strip("[]")
        bound = f"[{bound}]" if ":" in bound else bound
        wildcard = bound in ("0.0.0.0", "[::]")
        self._hosts: set[tuple[str, int]] = {(n, self.port) for n in LOOPBACK_NAMES}
        if not wildcard:  # the address itself (a page opened at http://192.168.1.5:8765/)
            self._hosts.add((bound, self.port))
        for name in allowed_hosts:
            self._hosts.add(split_host(name, self.port))
        if not _is_loopback(host.strip("[]")):
            logger.warning("the review server listens on %s, not on a loopback address: anyone who can reach "
                           "it can read the catalog", host)

    @property
    def url(self) -> str:
        host = self.bind_host
        if host in ("0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def host_allowed(self, host_header: str) -> bool:
        """True when a ``Host`` header names an allowed host at its port (no port: 80 or 443)."""
        parsed = split_host(host_header, 80)
        if parsed is None:
            return False
        if ":" not in host_header.rsplit("]", 1)[-1]:  # no port: the default one of http or https
            return parsed in self._hosts or (parsed[0], 443) in self._hosts
        return parsed in self._hosts

    def origin_allowed(self, origin: str) -> bool:
        """True when an ``Origin`` header is ``http(s)://<allowed host>``."""
        scheme, sep, netloc = origin.strip().lower().partition("://")
        if not sep or scheme not in ("http", "https"):
            return False
        parsed = split_host(netloc, 443 if scheme == "https" else 80)
        return parsed is not None and parsed in self._hosts

    # -- limits: an idle timeout per connection, a cap on connections (threads) -------------------------
    def process_request(self, request, client_address) -> None:  # noqa: ANN001 (socketserver's signature)
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            request.settimeout(self.idle_timeout)
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def start_in_thread(self) -> threading.Thread:
        """Serve in a daemon thread (for tests and notebooks); stop with ``shutdown()`` then ``server_close()``."""
        t = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="vitrine-review",
                             daemon=True)
        t.start()
        return t
