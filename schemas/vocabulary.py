"""The fixed words of wattstream's contracts, each written once: site kinds, meter roles,
sub-items, the three qualities, and the resolutions energy is answered at.

Each is a `Literal`, for the models and the type checker, with the tuple of its values for code
that iterates or indexes. The SQL migrations spell the same values in their CHECK constraints
(and, where a quality is stored as a smallint, in the column's comment); tests/unit/
test_vocabulary.py reads the migrations and holds the two against each other, so neither can
gain a value alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, get_args

__all__ = [
    "BUCKET_QUALITIES",
    "EMISSION_QUALITIES",
    "METER_ROLES",
    "READING_QUALITIES",
    "READING_QUALITY_CODES",
    "RESOLUTIONS",
    "RESOLUTION_S",
    "SITE_KINDS",
    "SUB_ITEMS",
    "BucketQuality",
    "EmissionQuality",
    "MeterRole",
    "ReadingQuality",
    "Resolution",
    "SiteKind",
    "SubItem",
]

SiteKind = Literal["building", "datacentre"]
SITE_KINDS: Final[tuple[SiteKind, ...]] = get_args(SiteKind)

# A site's total is its main meters, or its facility meters where it has no main meter
# (migration 003); sub-item meters only split it, and it_load is what PUE divides by.
MeterRole = Literal["main", "sub_item", "facility", "it_load", "generation"]
METER_ROLES: Final[tuple[MeterRole, ...]] = get_args(MeterRole)

# The sub-items of a public building's energy (分项能耗): lighting and sockets, air
# conditioning, power, special. A sub-item meter names one; no other meter may.
SubItem = Literal["照明插座", "空调", "动力", "特殊"]
SUB_ITEMS: Final[tuple[SubItem, ...]] = get_args(SubItem)

# What a reading's sender says of it, or "suspect" for a register jump ingest refused. The
# readings hypertable stores the position in this tuple (a smallint: it is the biggest table).
ReadingQuality = Literal["ok", "estimated", "suspect"]
READING_QUALITIES: Final[tuple[ReadingQuality, ...]] = get_args(ReadingQuality)
READING_QUALITY_CODES: Final[Mapping[str, int]] = {q: code for code, q in enumerate(READING_QUALITIES)}

# An energy bucket's quality, stored in energy_interval as its position here; a bucket is as
# good as its worst part, so a later position is worse.
BucketQuality = Literal["measured", "partial", "estimated"]
BUCKET_QUALITIES: Final[tuple[BucketQuality, ...]] = get_args(BucketQuality)

# How an emission figure's intensity was found, best first: a bucket summed from several
# intervals reports the worst of them.
EmissionQuality = Literal["measured", "estimated", "fallback", "missing"]
EMISSION_QUALITIES: Final[tuple[EmissionQuality, ...]] = get_args(EmissionQuality)

# The resolutions energy, emissions and PUE are answered at; days and months are the site's
# local ones.
Resolution = Literal["15min", "hour", "day", "month"]
RESOLUTIONS: Final[tuple[Resolution, ...]] = get_args(Resolution)
# The length of those that have one. A local day is 23 to 25 hours and a month 28 to 31 days:
# whole hours either way, so what fits an hour fits them.
RESOLUTION_S: Final[Mapping[Resolution, int]] = {"15min": 900, "hour": 3600}
