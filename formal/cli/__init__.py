"""The face: the `flushproof` command, proof obligations and scripts, the corpus, renderings
and the policy registry by name (docs/design.md §7)."""
