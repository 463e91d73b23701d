# The harness plugin supplies the options (--data-dir, --config, --gpu, --diag-json), markers,
# fixtures and report hooks for every test in this repository.
pytest_plugins = ["harness.plugin"]
