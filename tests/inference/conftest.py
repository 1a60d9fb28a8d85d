"""Markers of the inference tests."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "compile: compiles the particle filter's step with torch.compile (tens of seconds each; "
        "deselect with -m 'not compile')"
    )
