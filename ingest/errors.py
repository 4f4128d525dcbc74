"""The ingest package's root exception; the consumer loop decides retry vs stop from `retriable`."""

from __future__ import annotations

__all__ = ["DatabaseUnavailable", "FencedOffsets", "IngestError", "Stopping"]


class IngestError(Exception):
    retriable: bool = False


class DatabaseUnavailable(IngestError):
    """The database could not be reached or dropped the connection; the batch is retried."""

    retriable = True


class FencedOffsets(IngestError):
    """Another consumer advanced this partition's stored offset first: this worker's view is stale."""

    retriable = True


class Stopping(IngestError):
    """Asked to stop while Kafka had not acknowledged a batch's output: the batch is left
    uncommitted, to be read again by whoever owns its partitions next."""

    retriable = True
