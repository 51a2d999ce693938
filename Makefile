# The two commands of the README: `make run` (site.yml on the embedded default cluster, both clusters + the ML workflow) and `make test`.
# Both install what they need into .venv first (pinned in requirements-test.txt).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
COLL_ROOT := .build/collections
COLL_LINK := $(COLL_ROOT)/ansible_collections/aihow/hyperscaler
CONFIG ?= config/mlops.yml
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/$(COLL_ROOT)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: deps collection-link test unit lint sanity run validate build bench clean

deps: collection-link
	VENV=$(VENV) bash scripts/install-deps

# Ansible finds this checkout as aihow.hyperscaler through a link, no install step needed.
collection-link:
	@mkdir -p $(dir $(COLL_LINK))
	@ln -sfn $(CURDIR) $(COLL_LINK)

test: deps
	bash tests/run-all.sh

# The unit tier of make test (run by the fresh-machine tier): coverage of plugins/ must stay above 80%.
unit: deps
	$(PY) -m pytest tests/unit -q -p no:cacheprovider --cov=plugins --cov-report=term:skip-covered --cov-fail-under=80

lint: deps
	$(VENV)/bin/ansible-lint
	bash tests/shellcheck.sh

# The inventory source is generated so that CONFIG can be any cluster.yaml.
run: deps
	@printf 'plugin: aihow.hyperscaler.cluster\nconfig: %s\n' "$(abspath $(CONFIG))" > .build/run.cluster.yml
	$(VENV)/bin/ansible-playbook -i .build/run.cluster.yml playbooks/site.yml -e hyperscaler_config_file=$(abspath $(CONFIG))

validate: deps
	$(PY) scripts/hyperscaler-config validate $(CONFIG)

build: deps
	$(VENV)/bin/ansible-galaxy collection build --force --output-path .build

# make bench BENCH_ARGS=--vm adds the VM end to end timings (root).
bench: deps
	bash benchmarks/run.sh $(BENCH_ARGS)

clean:
	rm -rf .build tests/output .pytest_cache
