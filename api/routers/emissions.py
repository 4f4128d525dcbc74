"""Site emissions by period, location- and market-based, and the green certificates behind the latter.

Location-based: each energy bucket times the time-matched intensity of the site's region, as
the ingest consumers stored it (with its factor set, source and quality). Market-based (GHG
Protocol Scope 2): green-power contracts (绿电) and certificates (绿证) cover energy at their own
factor (0 for renewables); the rest is counted at the residual factor. A certificate covers the
part of its MWh proportional to how much of its period falls in the range asked (pro rata by
time), and at most the range's energy; the market-based figure of a bucket is its share of that.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from api.auth import Scoped, SitesRead, SitesWrite
from api.errors import ApiError, NotFound, error_responses
from api.export import CSV_RESPONSE, emissions_csv, wants_csv
from api.params import INTERVAL, AsOf, End, Res, RowId, Start, check_series, site_or_404
from schemas.api import CertificateCreate, CertificatePublic, EmissionBucket, SiteEmissions
from schemas.messages import IDENTIFIER
from schemas.vocabulary import EMISSION_QUALITIES

__all__ = ["router"]

router = APIRouter(prefix="/v1/sites", tags=["emissions"])

Site = Annotated[str, Path(pattern=IDENTIFIER)]
# the worst of a bucket's qualities is the latest in EMISSION_QUALITIES
_WORST_LAST = "ARRAY[" + ", ".join(f"'{q}'" for q in EMISSION_QUALITIES) + "]"
_AS_OF = (
    "(($4::timestamptz IS NULL AND e.superseded_at IS NULL) OR "
    "(e.recorded_at <= $4 AND (e.superseded_at IS NULL OR e.superseded_at > $4)))"
)
# $1 site, $2 start, $3 end, $4 as_of, $5 bucket interval, $6 time zone
_BUCKETS = f"""
SELECT time_bucket($5::text::interval, e.bucket_start, $6::text) AS start,
       sum(e.kwh) AS kwh,
       sum(e.co2e_kg) AS co2e_kg,
       sum(e.kwh) FILTER (WHERE e.co2e_kg IS NOT NULL) AS kwh_known,
       sum(e.kwh * e.residual_g_per_kwh) / 1000 AS residual_kg,
       max(array_position({_WORST_LAST}, e.quality)) AS worst,
       coalesce(array_agg(DISTINCT e.factor_set) FILTER (WHERE e.factor_set IS NOT NULL), '{{}}') AS sets,
       coalesce(array_agg(DISTINCT e.intensity_source) FILTER (WHERE e.intensity_source IS NOT NULL), '{{}}')
           AS sources,
       bool_or(EXISTS (SELECT FROM site_emissions p WHERE p.site_id = e.site_id
                         AND p.bucket_start = e.bucket_start AND p.superseded_at = e.recorded_at)) AS restated
  FROM site_emissions e
 WHERE e.site_id = $1 AND e.bucket_start >= $2 AND e.bucket_start < $3 AND {_AS_OF}
 GROUP BY 1
"""  # noqa: S608 - constant fragments, every value bound
_WITH_ENDS = f"""
SELECT b.*, ((b.start AT TIME ZONE $6) + $5::text::interval) AT TIME ZONE $6 AS "end"
  FROM ({_BUCKETS}) b ORDER BY b.start
"""  # noqa: S608 - constant fragments, every value bound
_QUALITY_COUNTS = f"""
SELECT e.quality, count(*) AS n FROM site_emissions e
 WHERE e.site_id = $1 AND e.bucket_start >= $2 AND e.bucket_start < $3 AND {_AS_OF}
 GROUP BY 1
"""  # noqa: S608 - constant fragments, every value bound
_CERTS_IN = """
SELECT mwh, factor_g_per_kwh,
       extract(epoch FROM least(period_end, $3) - greatest(period_start, $2))
         / extract(epoch FROM period_end - period_start) AS share
  FROM green_certificates
 WHERE site_id = $1 AND period_start < $3 AND period_end > $2
 ORDER BY factor_g_per_kwh, period_start
"""
_CERTS = """
SELECT certificate_id, site_id, kind, period_start, period_end, mwh, factor_g_per_kwh, reference
  FROM green_certificates WHERE site_id = $1 ORDER BY period_start, certificate_id
"""
_ADD_CERT = """
INSERT INTO green_certificates (site_id, kind, period_start, period_end, mwh, factor_g_per_kwh, reference)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING certificate_id, site_id, kind, period_start, period_end, mwh, factor_g_per_kwh, reference
"""
_DELETE_CERT = "DELETE FROM green_certificates WHERE site_id = $1 AND certificate_id = $2"


@router.get(
    "/{site}/emissions",
    response_model=SiteEmissions,
    summary="A site's emissions by period: location-based and market-based, each figure with its "
    "factor set and quality (JSON, or CSV with Accept: text/csv)",
    responses={**error_responses(404, 422), **CSV_RESPONSE},
)
async def site_emissions(
    request: Request,
    conn: Scoped,
    who: SitesRead,
    site: Site,
    start: Start,
    end: End,
    resolution: Res = "hour",
    as_of: AsOf = None,
) -> SiteEmissions | Response:
    check_series(start, end, resolution, request.app.state.settings.energy_bucket_s)
    site_row = await site_or_404(conn, site, who)
    tz = site_row["timezone"]
    rows = await conn.fetch(_WITH_ENDS, site, start, end, as_of, INTERVAL[resolution], tz)
    counts = {r["quality"]: r["n"] for r in await conn.fetch(_QUALITY_COUNTS, site, start, end, as_of)}
    certs = await conn.fetch(_CERTS_IN, site, start, end)
    total_kwh = sum(r["kwh"] for r in rows)
    # certificates cover energy at their own factor, cleanest first, up to the range's energy
    remaining = total_kwh
    covered = cert_kg = 0.0
    for c in certs:
        kwh = min(c["mwh"] * 1000 * float(c["share"]), remaining)
        covered += kwh
        cert_kg += kwh * c["factor_g_per_kwh"] / 1000
        remaining -= kwh
    uncovered = (total_kwh - covered) / total_kwh if total_kwh else 0.0
    buckets = []
    for r in rows:
        market = None
        if r["residual_kg"] is not None and r["kwh_known"] == r["kwh"]:
            market = r["residual_kg"] * uncovered + (r["kwh"] / total_kwh * cert_kg if total_kwh else 0.0)
        buckets.append(
            EmissionBucket(
                start=r["start"],
                end=r["end"],
                kwh=r["kwh"],
                location_kg=r["co2e_kg"] if r["kwh_known"] == r["kwh"] else None,
                market_kg=market,
                intensity_g_per_kwh=r["co2e_kg"] * 1000 / r["kwh_known"] if r["kwh_known"] else None,
                quality=EMISSION_QUALITIES[(r["worst"] or len(EMISSION_QUALITIES)) - 1],
                factor_sets=sorted(r["sets"]),
                intensity_sources=sorted(r["sources"]),
                restated=bool(r["restated"]),
            )
        )
    residual_kg = sum(r["residual_kg"] or 0.0 for r in rows)
    answer = SiteEmissions(
        site=site,
        region=site_row["region"],
        resolution=resolution,
        timezone=tz,
        as_of=as_of,
        total_kwh=total_kwh,
        location_tco2e=sum(b.location_kg or 0.0 for b in buckets) / 1000,
        market_tco2e=sum(b.market_kg or 0.0 for b in buckets) / 1000,
        certificates_mwh=covered / 1000,
        residual_factor_g_per_kwh=residual_kg * 1000 / total_kwh if total_kwh else None,
        factor_sets=sorted({s for b in buckets for s in b.factor_sets}),
        quality={q: counts[q] for q in EMISSION_QUALITIES if q in counts},
        buckets=buckets,
    )
    return emissions_csv(answer) if wants_csv(request) else answer


@router.get(
    "/{site}/certificates",
    response_model=list[CertificatePublic],
    summary="The site's green-power contracts (绿电) and green certificates (绿证)",
    responses=error_responses(404, 422),
)
async def list_certificates(conn: Scoped, who: SitesRead, site: Site) -> list[CertificatePublic]:
    await site_or_404(conn, site, who)
    return [CertificatePublic(**dict(r)) for r in await conn.fetch(_CERTS, site)]


@router.post(
    "/{site}/certificates",
    response_model=CertificatePublic,
    status_code=201,
    summary="Record a green-power contract or green certificates for a period",
    responses=error_responses(404, 422),
)
async def add_certificate(
    conn: Scoped, who: SitesWrite, site: Site, body: CertificateCreate
) -> CertificatePublic:
    if body.period_end <= body.period_start:
        raise ApiError("period_end must be after period_start", field="period_end")
    await site_or_404(conn, site, who)
    row = await conn.fetchrow(
        _ADD_CERT,
        site,
        body.kind,
        body.period_start,
        body.period_end,
        body.mwh,
        body.factor_g_per_kwh,
        body.reference,
    )
    return CertificatePublic(**dict(row))


@router.delete(
    "/{site}/certificates/{certificate_id}",
    status_code=204,
    response_class=Response,
    summary="Withdraw a certificate or contract",
    responses=error_responses(404, 422),
)
async def delete_certificate(conn: Scoped, who: SitesWrite, site: Site, certificate_id: RowId) -> Response:
    await site_or_404(conn, site, who)
    status = await conn.execute(_DELETE_CERT, site, certificate_id)
    if status.endswith(" 0"):
        raise NotFound(f"certificate {certificate_id} not found at site {site!r}")
    return Response(status_code=204)
