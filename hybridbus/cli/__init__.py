"""The `hbus` command line: one Typer sub-app per concept (stack, schemas, rules, …)."""
