"""Registry: release tags, stages and promotion, fetching and reproducing released models."""
