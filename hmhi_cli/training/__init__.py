"""Training and fine-tuning HMHI-Net (the paper's recipe as defaults)."""
