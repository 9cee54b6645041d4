"""Losses: pure math over features; cross-rank exchange functions are passed in from dist/."""
