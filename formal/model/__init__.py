"""The abstract model: the state vocabulary, events, the architecture's rules, roles, KVM's
mechanism, the properties and the machine that steps them.  Plain Python over ints and bools;
it imports nothing from the other layers (docs/design.md §7)."""
