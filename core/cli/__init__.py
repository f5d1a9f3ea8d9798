"""The `medpipes` command line: typer apps, errors turned into one line at this edge."""
