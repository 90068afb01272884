"""Enable pytest's pytester fixture for the plugin tests."""

pytest_plugins = ["pytester"]
