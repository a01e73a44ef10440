"""Routing by data grade: the pure core of hybridbus (no Kafka, no Vault, no network, no clock)."""
