"""netsentry: packet captures in, compromised tenants and transient faults out."""

__version__ = "0.1.0"
