"""Model-ready feature tables: tenant windows (compromise) and fault windows (faults)."""
