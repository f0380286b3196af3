"""TF Serving's own test cases, ported as over-the-wire tests of `cnnpipe serve` (a package, so that its
conftest.py does not collide with tests/conftest.py under the module name `conftest`)."""
