"""Download stage: fetchers, verification and safe extraction of public sources."""
