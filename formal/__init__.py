"""flushproof: a formal verifier for the KVM x86 MMU's flush and root-reuse policy."""
