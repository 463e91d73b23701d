# The harness plugin (harness/plugin.py) supplies the options (--data-dir, --config, --gpu,
# --diag-json), markers, fixtures and report hooks for every test in this repository.
#
# Normally it is loaded through its entry point (`pip install -r requirements.txt -e .`), named
# "harness.plugin" after the module. Listing it here as well keeps a checkout that was not
# installed working (`--data-dir=PATH` then needs the "=" form: options of a conftest-loaded
# plugin are unknown while pytest pre-parses the command line). With the entry point installed
# this line is a no-op: pytest's import_plugin returns at once for a name already registered,
# so the plugin is never registered twice.
pytest_plugins = ["harness.plugin"]
