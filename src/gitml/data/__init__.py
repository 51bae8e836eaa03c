"""Tables on disk: reading sources, atomic writes, schemas and validation."""
