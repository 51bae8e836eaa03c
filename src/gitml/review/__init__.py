"""Review: compare two revisions of a model, the promotion gate, and the PR report."""
