"""API request and response models, one module per domain. Nothing here crosses Temporal."""
