"""Symbolic execution of the model's own code, and the transition relation it builds for the
engines.  Uses the model, the solver seam and the engines' system type (docs/design.md §7)."""
