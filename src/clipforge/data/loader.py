"""Training/eval data loading: every rank and worker reads a disjoint part of each epoch.

Contract used by the trainer (train/) and the evaluators (eval/):

    loader = build_loader(cfg, tokenizer=tok, preprocess=pp_cfg, world=world, batch_size=B,
                          train=True, epoch=e, seed=s, skip_batches=k)
    for batch in loader:            # batch: Batch
        batch.pixels     # (B', 3, H, W) float32, B' <= B when bad samples were skipped
        batch.token_ids  # (B', context_length) int64
    loader.stats         # SkipStats: counts of skipped items by reason, for the per-epoch summary

The order of an epoch is a pure function of (seed, epoch), so a resumed run that skips the first
``skip_batches`` batches of the epoch sees exactly the batches the uninterrupted run saw.
"""
