"""Adapters: hybridbus's one way to each outside system (Kafka, Vault, S3, Avro, Prometheus, files, settings).

They may import `routing` and each other, nothing else of the project.
"""
