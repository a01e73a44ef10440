"""The local two-cloud stack: real Kafka (private, public), OpenBao, SeaweedFS and Prometheus on 127.0.0.1.

`hbus stack up|status|down|logs` drives it; everything it starts keeps its data under one state directory.
"""
