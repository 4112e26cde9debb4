"""``python -m hmhi_cli``: run the hmhi command line."""

from hmhi_cli.cli import run

run()
