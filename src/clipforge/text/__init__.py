"""Tokenization: OpenAI-exact byte-level BPE and trainable smaller vocabularies."""
