"""Benchmarks of netsentry against peer tools (tshark → pandas, pyshark, dpkt)."""
