"""A compact, cached index of a catalog for the live review page (10,000 SKUs and more).

The live page shows one page of SKUs at a time; to filter, order and count it needs a few facts per SKU,
not whole manifests. `CatalogIndex` keeps those facts (`SkuFacts`, a few hundred bytes each) and re-reads a
manifest only when its modification time or size changed, so a page request on a 10,000-SKU catalog costs
one ``stat`` per SKU plus the manifests of the SKUs shown.

Failed SKUs come from the latest batch report (``CATALOG/_reports/*.json``, newest by name, which starts
with the run's UTC time): every entry with ``status: failed`` is listed with its ``error``, whether or not
the SKU has an older rendering in the catalog.

Filters (`ReviewQuery`):

- ``status``: ``all``; ``needs-attention`` (an output whose review status is ``needs-attention``, or with
  quality flags); ``failed`` (failed in the latest run, or an unreadable manifest); or a review status
  (``pending``, ``approved``, ``rejected``, ``edit-requested``), matched against **each output's** status,
  so ``rejected`` shows a SKU with a rejected output even when the SKU as a whole is ``edit-requested``;
- ``engine``, ``marketplace``: exact names; ``q``: a case-insensitive substring of the SKU.

Order: `review_order_key` (needs attention first, then failed, then by SKU).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import InputError
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest
from pipelines.catalog.report import REPORTS_DIR
from pipelines.catalog.review import STATUSES, catalog_entries, is_reviewable, sku_review_status

logger = logging.getLogger(__name__)

#: Review status of an output that an automatic check flagged (set by the quality checks).
NEEDS_ATTENTION = "needs-attention"
#: The page's status filters, in the order shown.
FILTERS = tuple(dict.fromkeys(("all", NEEDS_ATTENTION, "failed", *STATUSES)))  # STATUSES may gain needs-attention
#: SKUs per page: default and largest accepted.
DEFAULT_PER_PAGE, MAX_PER_PAGE = 20, 200


@dataclass
class SkuFacts:
    """What the page needs to filter, order and count one SKU.

    Attributes:
        sku (`str`): the SKU.
        status (`str`): the SKU's review status (`pipelines.catalog.review.sku_review_status`), ``failed`` for a SKU
            without a readable manifest.
        output_statuses (`tuple[str, ...]`): the review status of each reviewable output.
        flags (`tuple[str, ...]`): quality flags of its outputs (``quality.flags``), deduplicated.
        engine (`str | None`): the engine that rendered it.
        marketplaces (`tuple[str, ...]`): the product's marketplaces.
        error (`str | None`): why the SKU failed in the latest run, or why its manifest is unreadable.
        has_manifest (`bool`): whether the catalog has a readable manifest for it.
    """

    sku: str
    status: str
    output_statuses: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    engine: str | None = None
    marketplaces: tuple[str, ...] = ()
    error: str | None = None
    has_manifest: bool = True

    @property
    def needs_attention(self) -> bool:
        return NEEDS_ATTENTION in self.output_statuses or bool(self.flags) or self.status == NEEDS_ATTENTION

    @property
    def failed(self) -> bool:
        return self.error is not None

    def matches(self, status: str) -> bool:
        """Whether the SKU passes the status filter ``status`` (one of `FILTERS`)."""
        if status == "all":
            return True
        if status == NEEDS_ATTENTION:
            return self.needs_attention
        if status == "failed":
            return self.failed
        return status in self.output_statuses

    def to_json(self) -> dict[str, Any]:
        return {"sku": self.sku, "status": self.status, "output_statuses": list(self.output_statuses),
                "flags": list(self.flags), "engine": self.engine, "marketplaces": list(self.marketplaces),
                "error": self.error, "needs_attention": self.needs_attention, "failed": self.failed}


def review_order_key(facts: SkuFacts) -> tuple[int, str]:
    """The page's order: SKUs that need attention first, then failed ones, then the rest; by SKU within."""
    if facts.needs_attention:
        rank = 0
    elif facts.failed:
        rank = 1
    else:
        rank = 2
    return rank, facts.sku


def facts_from_manifest(sku: str, m: dict[str, Any]) -> SkuFacts:
    """`SkuFacts` of a manifest (the report's error is added by `CatalogIndex`)."""
    outputs = [o for o in m.get("outputs") or [] if is_reviewable(o)]
    flags: list[str] = []
    for o in outputs:
        for f in (o.get("quality") or {}).get("flags") or []:
            name = str(f.get("flag", "")) if isinstance(f, dict) else str(f)  # manifest: {check, flag, message}
            if name and name not in flags:
                flags.append(name)
    product = m.get("product") or {}
    return SkuFacts(
        sku=sku, status=sku_review_status(m.get("outputs") or []),
        output_statuses=tuple((o.get("review") or {}).get("status", "pending") for o in outputs),
        flags=tuple(flags), engine=(m.get("engine") or {}).get("name"),
        marketplaces=tuple(str(x) for x in product.get("marketplaces") or []),
    )


def latest_report(catalog_dir: str | Path) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest batch report ``CATALOG/_reports/*.json`` and its content (``(None, None)`` if none).

    An unreadable newest report is logged and skipped in favour of the next one.
    """
    reports = sorted((Path(catalog_dir) / REPORTS_DIR).glob("*.json"), reverse=True)
    for path in reports:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.warning("%s: unreadable batch report (%s); trying an older one", path, exc)
            continue
        if isinstance(data, dict) and isinstance(data.get("entries"), list):
            return path, data
        logger.warning("%s: not a batch report (no entries list); trying an older one", path)
    return None, None


def failed_skus(catalog_dir: str | Path) -> dict[str, str]:
    """``{sku: error}`` of the SKUs that failed in the latest batch report."""
    _path, report = latest_report(catalog_dir)
    out: dict[str, str] = {}
    for e in (report or {}).get("entries") or []:
        if isinstance(e, dict) and e.get("status") == "failed" and isinstance(e.get("sku"), str):
            out[e["sku"]] = str(e.get("error") or "failed (no error recorded)")
    return out


@dataclass
class ReviewQuery:
    """One page request: filters, search and page number (see the module docstring).

    Attributes:
        status (`str`, defaults to ``"all"``): one of `FILTERS`.
        engine (`str | None`): only SKUs rendered by this engine.
        marketplace (`str | None`): only SKUs for this marketplace.
        q (`str`): substring of the SKU (case-insensitive); empty for all.
        page (`int`, defaults to 1): 1-based page number.
        per_page (`int`, defaults to `DEFAULT_PER_PAGE`): SKUs per page, 1..`MAX_PER_PAGE`.
    """

    status: str = "all"
    engine: str | None = None
    marketplace: str | None = None
    q: str = ""
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @classmethod
    def from_params(cls, params: dict[str, list[str]]) -> ReviewQuery:
        """Parse URL query parameters (`urllib.parse.parse_qs` output).

        Raises:
            `InputError`: an unknown status or a page/per_page that is not a positive integer (names the key).
        """
        def one(key: str) -> str | None:
            v = params.get(key)
            return v[0].strip() if v and v[0].strip() else None

        status = one("status") or "all"
        if status not in FILTERS:
            raise InputError(f"unknown status {status!r}; expected one of {', '.join(FILTERS)}", key="status")
        ints = {}
        for key, default in (("page", 1), ("per_page", DEFAULT_PER_PAGE)):
            raw = one(key)
            try:
                ints[key] = int(raw) if raw is not None else default
            except ValueError:
                raise InputError(f"{key} must be a whole number, got {raw!r}", key=key) from None
            if ints[key] < 1:
                raise InputError(f"{key} must be at least 1, got {ints[key]}", key=key)
        return cls(status=status, engine=one("engine"), marketplace=one("marketplace"), q=(one("q") or "")[:200],
                   page=ints["page"], per_page=min(ints["per_page"], MAX_PER_PAGE))

    def matches(self, f: SkuFacts) -> bool:
        if not f.matches(self.status):
            return False
        if self.engine is not None and f.engine != self.engine:
            return False
        if self.marketplace is not None and self.marketplace not in f.marketplaces:
            return False
        return not self.q or self.q.lower() in f.sku.lower()

    def params(self, **changes: Any) -> dict[str, str]:
        """The query as URL parameters (defaults left out), with ``changes`` applied."""
        d = {"status": self.status, "engine": self.engine, "marketplace": self.marketplace, "q": self.q,
             "page": self.page, "per_page": self.per_page, **changes}
        defaults = {"status": "all", "page": 1, "per_page": DEFAULT_PER_PAGE, "q": ""}
        return {k: str(v) for k, v in d.items() if v is not None and defaults.get(k) != v}


@dataclass
class IndexPage:
    """One page of the index.

    Attributes:
        skus (`list[SkuFacts]`): the SKUs on this page, in `review_order_key` order.
        total (`int`): SKUs matching the query (all pages).
        page (`int`), pages (`int`): this page (clamped to 1..pages) and the number of pages (>= 1).
        counts (`dict[str, int]`): SKUs matching each status filter of `FILTERS` (ignoring the status
            filter, honouring engine/marketplace/search), for the live counts.
        engines (`list[str]`), marketplaces (`list[str]`): the values present in the catalog.
    """

    skus: list[SkuFacts]
    total: int
    page: int
    pages: int
    counts: dict[str, int]
    engines: list[str] = field(default_factory=list)
    marketplaces: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"skus": [f.to_json() for f in self.skus], "total": self.total, "page": self.page,
                "pages": self.pages, "counts": self.counts, "engines": self.engines,
                "marketplaces": self.marketplaces}


class CatalogIndex:
    """Per-SKU facts of a catalog, cached by each manifest's ``(mtime_ns, size)``; thread-safe.

    A full scan (one ``stat`` per SKU, about 1 s for 10,000 SKUs on a busy disk) is reused for ``ttl``
    seconds; `refresh` updates one SKU at once (the server calls it after each decision), so counts are
    live without a rescan.

    Args:
        catalog_dir (`str | Path`): the catalog root.
        ttl (`float`, *optional*, defaults to 2): seconds a scan is reused; 0 scans on every call.
    """

    def __init__(self, catalog_dir: str | Path, ttl: float = 2.0):
        self.catalog = Path(catalog_dir)
        self.ttl = ttl
        self._cache: dict[str, tuple[tuple[int, int], SkuFacts]] = {}
        self._lock = threading.Lock()
        self._snapshot: tuple[float, list[SkuFacts]] | None = None

    def refresh(self, sku: str) -> None:
        """Re-read one SKU's manifest into the current scan (after a decision on it)."""
        with self._lock:
            if self._snapshot is None:
                return
            stamp, facts = self._snapshot
            for i, f in enumerate(facts):
                if f.sku == sku and f.has_manifest:
                    new = self._facts(sku, self.catalog / sku)
                    if f.error is not None and new.error is None:
                        new = SkuFacts(**{**new.__dict__, "error": f.error})
                    facts[i] = new
            facts.sort(key=review_order_key)

    def _facts(self, sku: str, d: Path) -> SkuFacts:
        path = d / MANIFEST_NAME
        try:
            st = path.stat()
        except OSError as exc:
            return SkuFacts(sku=sku, status="failed", error=f"{path}: {exc}", has_manifest=False)
        key = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(sku)
        if hit is not None and hit[0] == key:
            return hit[1]
        try:
            facts = facts_from_manifest(sku, read_manifest(path))
        except InputError as exc:
            facts = SkuFacts(sku=sku, status="failed", error=str(exc), has_manifest=False)
        self._cache[sku] = (key, facts)
        return facts

    def all(self, max_age: float | None = None) -> list[SkuFacts]:
        """Facts of every SKU (catalog entries and SKUs failed in the latest report), in review order.

        Args:
            max_age (`float`, *optional*, defaults to ``ttl``): reuse a scan up to this many seconds old.
        """
        max_age = self.ttl if max_age is None else max_age
        with self._lock:
            if self._snapshot is not None and time.monotonic() - self._snapshot[0] < max_age:
                return list(self._snapshot[1])
        failed = failed_skus(self.catalog)
        with self._lock:
            entries = catalog_entries(self.catalog)
            seen = {sku for sku, _d in entries}
            for gone in set(self._cache) - seen:
                del self._cache[gone]
            out = []
            for sku, d in entries:
                f = self._facts(sku, d)
                if sku in failed and f.error is None:
                    f = SkuFacts(**{**f.__dict__, "error": failed[sku]})
                out.append(f)
        for sku, err in failed.items():
            if sku not in seen:
                out.append(SkuFacts(sku=sku, status="failed", error=err, has_manifest=False))
        out.sort(key=review_order_key)
        with self._lock:
            self._snapshot = (time.monotonic(), out)
        return list(out)

    def query(self, q: ReviewQuery, max_age: float | None = None) -> IndexPage:
        """The page of SKUs ``q`` asks for, with counts per status filter (``max_age``: see `all`)."""
        facts = self.all(max_age)
        scoped = [f for f in facts if (q.engine is None or f.engine == q.engine)
                  and (q.marketplace is None or q.marketplace in f.marketplaces)
                  and (not q.q or q.q.lower() in f.sku.lower())]
        counts = {s: sum(1 for f in scoped if f.matches(s)) for s in FILTERS}
        matching = [f for f in scoped if f.matches(q.status)]
        pages = max(1, -(-len(matching) // q.per_page))
        page = min(q.page, pages)
        start = (page - 1) * q.per_page
        return IndexPage(
            skus=matching[start:start + q.per_page], total=len(matching), page=page, pages=pages, counts=counts,
            engines=sorted({f.engine for f in facts if f.engine}),
            marketplaces=sorted({m for f in facts for m in f.marketplaces}),
        )
