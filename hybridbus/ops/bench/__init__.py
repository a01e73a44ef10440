"""Side-by-side benchmarks of hybridbus against Kafka's own perf tool, a raw Python pipe and MirrorMaker 2.

`hbus bench` drives everything on the local stack; see docs/benchmarks.md for what each figure means.
"""
