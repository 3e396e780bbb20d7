"""Proof engines over a transition system (bmc, k-induction, houdini, IC3) with the solver
seam; they know terms, not KVM (docs/design.md §7)."""
