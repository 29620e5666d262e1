# E-Monitor: the README's two commands (`make demo`, `make test`) and service shortcuts.
VENV   := .venv
EMON   := $(VENV)/bin/emon
PYTEST := $(VENV)/bin/python -m pytest

.PHONY: bootstrap services-up services-down services-status services-logs init test test-unit test-integration demo

bootstrap:
	scripts/bootstrap.sh

services-up: bootstrap
	$(EMON) services up

services-down:
	$(EMON) services down

services-status:
	$(EMON) services status

services-logs:
	$(EMON) services logs

init: services-up
	$(EMON) init

# Everything: bootstrap, services up, migrate, pytest, stop the services this run started.
test:
	scripts/test.sh $(PYTEST_ARGS)

test-unit: bootstrap
	$(PYTEST) tests/unit $(PYTEST_ARGS)

test-integration: init
	$(PYTEST) -m services $(PYTEST_ARGS)

# The whole system with simulated patients and units (emon demo starts the services itself,
# so it can stop at Ctrl-C the ones it started). Options: make demo DEMO_ARGS="--patients 30".
demo: bootstrap
	$(EMON) demo $(DEMO_ARGS)
