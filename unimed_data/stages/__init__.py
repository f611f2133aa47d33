"""The pipeline stages, one file each (ingest, convert, caption, shard); `base` holds the contract
they share and `order` the order they run in."""
