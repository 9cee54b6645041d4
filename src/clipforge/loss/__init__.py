"""Losses: pure math over features (contrastive, sigmoid, distill); cross-rank exchange is passed in from dist/.

``clipforge.loss.build.build_loss(cfg, world)`` picks one for a ``LossConfig``. This package's ``__init__``
imports nothing, so reading a ``LossConfig`` (``clipforge.loss.config``) never imports torch.
"""
