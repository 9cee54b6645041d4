"""The generator scripts here run only in the reference environment (OpenCLIP + timm); pytest never imports them."""

collect_ignore = ["make_open_clip_fixtures.py", "make_param_counts.py", "fixture_specs.py"]
