"""Base-model loading, LoRA state handling, local training and generation."""
