"""The processors' runtime: Faust app factory, per-record steps, rule feed, lag, audit chain and archive.

It may import `routing` and the adapters; never the operations code or the CLI.
"""
