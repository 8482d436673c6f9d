"""Tenant traffic model: a simulated multi-tenant cloud that writes labelled pcaps."""
