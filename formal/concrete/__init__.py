"""The concrete level: guest page tables, the saturated-TLB oracle, KVM's shadow MMU on real
tables, and the replay of a trace on them.  Uses the model (docs/design.md §7)."""
