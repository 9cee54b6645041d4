"""Data: preprocessing transforms, caption/image sources, WebDataset shards and demo-set builders."""
