"""Datasets and data sources for HMHI-Net: dataset layouts, loaders and synthetic clips."""
