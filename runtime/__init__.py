"""What ingest and the API share at run time: which database errors are transient, and the one
retry-with-backoff loop. Below both; imports only schemas (and the clients' libraries)."""
