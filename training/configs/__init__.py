"""Config files for ``python -m training STAGE --config NAME`` (each defines ``config(stage)``)."""
