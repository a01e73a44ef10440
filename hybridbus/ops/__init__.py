"""Operations: the local stack, drills, hostile input, samples, leak scan, status, infra render/check, bench.

Code a person runs around the bus, not in it: nothing of the runtime, the processors or the clients imports it.
"""
