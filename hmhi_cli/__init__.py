"""hmhi: find and cut out the main moving object of any video (HMHI-Net)."""

__version__ = "0.1.0"
