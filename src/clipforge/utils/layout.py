"""Names of the folders a training run writes in its run directory (train/ writes them; others recognise a run)."""

CHECKPOINT_DIR = "checkpoints"  # training-state checkpoints: RUN_DIR/checkpoints/step_00000123.pt (train/state.py)
FINAL_DIR = "final"  # the exported model, a clipforge checkpoint: RUN_DIR/final (train/trainer.py)
