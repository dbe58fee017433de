"""Segmenter networks (``nn.Module`` files); the procedures that load and run them live one level up."""
