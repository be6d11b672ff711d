# meshcast: run `make` to list the targets.

.DEFAULT_GOAL := help
SHELL := /bin/bash

# Go is at /usr/local/go on the build machines; a go already on PATH wins.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
SOAK ?= 10m
FUZZTIME ?= 30s
TESTFLAGS ?=
BIN := bin

PREFIX ?= /usr/local
DESTDIR ?=
UNITDIR ?= /etc/systemd/system

.PHONY: help build test deps vet demo fuzz bench microbench soak lint clean install

help: ## List the targets
	@echo "usage: make TARGET   (variables: FUZZTIME=$(FUZZTIME), ENCAP=gre|vxlan for demo, TESTFLAGS)"
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_-]+:.*## / { printf "  %-7s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# meshcast-bench is a binary of its own: the daemon, which runs with
# CAP_NET_ADMIN, links none of the harness's charting code
# (cmd/meshcast's TestDaemonDeps checks it).
build: ## Build bin/meshcast, bin/meshcast-bench and bin/mcastprobe
	CGO_ENABLED=0 $(GO) build -o $(BIN)/meshcast ./cmd/meshcast
	CGO_ENABLED=0 $(GO) build -o $(BIN)/meshcast-bench ./cmd/meshcast-bench
	CGO_ENABLED=0 $(GO) build -o $(BIN)/mcastprobe ./internal/cmd/mcastprobe

# The root integration tests need ip, ping, ethtool, nft (the IGMP
# conformance and differential tests count deliveries with nftables) and
# FRR; the race detector needs a C compiler; systemd-analyze verifies the
# unit file. Install whatever is missing,
# and run apt-get update only then.
# FRR (for TestIntegrationFRRRouter) is installed without starting or
# enabling its service: the test runs its own zebra and pimd in a namespace.
deps: ## Install the tools the tests use (iproute2 for ip and tc, iputils-ping, ethtool, nftables, frr, and gcc for the race detector)
	@missing=""; \
	{ command -v ip >/dev/null && command -v tc >/dev/null; } || missing="$$missing iproute2"; \
	command -v ping >/dev/null || missing="$$missing iputils-ping"; \
	command -v ethtool >/dev/null || missing="$$missing ethtool"; \
	command -v nft >/dev/null || missing="$$missing nftables"; \
	command -v gcc >/dev/null || missing="$$missing gcc libc6-dev"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	{ [ -x /usr/lib/frr/pimd ] && [ -x /usr/lib/frr/zebra ] && command -v vtysh >/dev/null; } || missing="$$missing frr"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
		echo "missing:$$missing (not root, so not installing; root integration tests will skip)"; \
		exit 0; \
	fi; \
	echo "installing:$$missing"; \
	policy=/usr/sbin/policy-rc.d; \
	if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' >$$policy && chmod 755 $$policy && trap 'rm -f $$policy' EXIT; fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	rc=$$?; \
	case "$$missing" in *frr*) systemctl disable frr >/dev/null 2>&1 || true;; esac; \
	exit $$rc

# go mod tidy -diff changes nothing; it prints what go mod tidy would change
# and fails if that is anything (a module nothing imports, a missing sum).
TIDY_CHECK = $(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy: run go mod tidy and commit the result"; exit 1; }

vet: ## Check that go.mod is tidy, and run go vet on every package, also with the fault-injection seam of the tests
	$(TIDY_CHECK)
	$(GO) vet ./...
	$(GO) vet -tags meshcast_faultinject ./overlay ./cmd/meshcast

# Two passes. The first runs the tests under the race detector: every
# package's, the root integration tests that run meshcast's code inside the
# test binary included (overlay, ping, nstest, mcastprobe). cmd/meshcast's
# integration tests run the daemon as a program of its own: with
# MESHCAST_TEST_RACE=1 (MESHCAST_TEST_RACE=1 make test) they build it with
# -race and run there too, and a daemon's race report fails its test
# (nstest's Node.Start); that adds about 8 minutes on 2 cores, so by default
# they run in the second pass only. The race detector needs cgo, hence a C
# compiler: without one the first pass is skipped with a warning, or fails
# under CI=true. The second pass, without the race detector, runs every
# test: with cgo the daemon cannot drop its capabilities, and the race
# detector's shadow memory defeats the memory bounds. On 2 cores with a warm
# build cache: about 2 and 7 minutes.
test: deps build vet ## Run every test, under the race detector and then without, root integration tests included (they skip without root)
	@if [ "$$($(GO) env CGO_ENABLED)" != 1 ]; then \
		echo "WARNING: no race detector pass: it needs cgo and a C compiler (apt-get install gcc)"; \
		if [ "$$CI" = true ]; then exit 1; fi; \
	elif [ "$$MESHCAST_TEST_RACE" = 1 ]; then \
		echo "== every test under the race detector, the daemons of cmd/meshcast's integration tests too"; \
		set -x; $(GO) test -race -p 1 -count=1 -timeout 30m $(TESTFLAGS) ./...; \
	else \
		echo "== the tests under the race detector, but cmd/meshcast's integration tests (MESHCAST_TEST_RACE=1 adds them)"; \
		set -x; \
		$(GO) test -race -p 1 -count=1 -timeout 20m $(TESTFLAGS) $$($(GO) list ./... | grep -vx "$$($(GO) list -m)/cmd/meshcast") && \
		$(GO) test -race -p 1 -count=1 -timeout 10m -skip '^TestIntegration' $(TESTFLAGS) ./cmd/meshcast; \
	fi
	@echo "== every test without the race detector"
	MESHCAST_TEST_RACE= $(GO) test -p 1 -count=1 -timeout 20m $(TESTFLAGS) ./...
	@echo "== the offload fallbacks, with faults injected through the test-only seam (tag meshcast_faultinject)"
	MESHCAST_TEST_RACE= $(GO) test -p 1 -count=1 -timeout 10m -tags meshcast_faultinject -run 'Fault' $(TESTFLAGS) ./overlay ./cmd/meshcast

# meshcast also runs on arm64 (AWS Graviton). cross builds and vets every
# package, test files included, for GOARCH=arm64, then runs the tests that
# need no root as arm64 binaries under qemu-user, installing
# qemu-user-static if it is missing (apt-get update only then). The
# integration tests (TestIntegration*, which need root, network namespaces
# and netlink) stay on the host: qemu-user does not emulate those faithfully.
CROSS_PKGS := ./igmp ./mld ./discovery ./internal/inet ./internal/ping ./internal/metrics \
	./internal/fakeaws ./replicate ./overlay ./bench
.PHONY: cross
cross: ## Build and vet for arm64, and run the unprivileged tests as arm64 under qemu-user
	CGO_ENABLED=0 GOARCH=arm64 $(GO) build ./...
	CGO_ENABLED=0 GOARCH=arm64 $(GO) vet ./...
	CGO_ENABLED=0 GOARCH=arm64 $(GO) vet -tags meshcast_faultinject ./overlay ./cmd/meshcast
	@if ! command -v qemu-aarch64-static >/dev/null; then \
		if [ "$$(id -u)" -ne 0 ]; then \
			echo "qemu-aarch64-static missing (not root, so not installing): arm64 tests not run"; \
			exit 0; \
		fi; \
		echo "installing: qemu-user-static"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static; \
	fi
	@if command -v qemu-aarch64-static >/dev/null; then \
		set -x; CGO_ENABLED=0 GOARCH=arm64 $(GO) test -count=1 -timeout 10m -exec qemu-aarch64-static \
			-skip '^TestIntegration|^TestSystemdUnitVerifies$$' $(CROSS_PKGS); \
	fi

demo: build ## Run the three-instance demo in network namespaces (root; ENCAP=gre|vxlan)
	./scripts/demo.sh

# Each fuzz target runs on its own: go test -fuzz accepts one target at a
# time. `go test -list` prints a package's targets, then its "ok" line.
fuzz: ## Run every Fuzz* target for FUZZTIME each (default 30s)
	@set -euo pipefail; \
	targets=$$($(GO) test -list '^Fuzz' ./... | awk '/^Fuzz/ { names[n++] = $$1; next } /^(ok|\?) / { for (i = 0; i < n; i++) print $$2, names[i]; n = 0 }'); \
	if [ -z "$$targets" ]; then echo "no fuzz targets"; exit 0; fi; \
	while read -r pkg target; do \
		echo "== $$pkg $$target ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$target\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=100x "$$pkg"; \
	done <<< "$$targets"

# The quick mode measures what limits a deployment (one daemon per
# instance): the copies/s one sending node sends to N receiving nodes that
# count and drop them at their underlay ingress (--measure source), and the
# datagrams/s one receiving node delivers to an application (--measure
# receiver); the report estimates the ceiling of one stream from both. The
# harness prints its method first; --measure e2e is the whole path on one
# machine.
bench: build ## Measure what limits a deployment, quick (root): source copies/s at fanout 1, 4, 16 and receiver capacity, userspace and kernel paths; table, JSON, chart in bench-out/
	mkdir -p bench-out
	$(BIN)/meshcast-bench --meshcast $(BIN)/meshcast --quick --measure source,receiver --fanout 1,4,16 --payload 64,1400 --encap vxlan,gre \
		--json bench-out/quick.json --chart bench-out/quick

soak: deps ## Sustained load (root, not part of test): 5 nodes, a steady stream, churn every 30 s, for SOAK (default 10m)
	MESHCAST_SOAK=$(SOAK) $(GO) test -count=1 -run '^TestSoak$$' -v -timeout 3h ./cmd/meshcast

# Boots Debian's 6.1 and 6.12 cloud kernels under qemu (TCG, no KVM needed)
# and runs ./internal/vmtest inside each; see scripts/vmtest.sh.
.PHONY: vmtest
vmtest: ## Check multicast delivery, takeovers, MLD snooping and delivery over an IPv6 underlay on Debian's 6.1 and 6.12 kernels booted under qemu (root; a few minutes)
	./scripts/vmtest.sh

microbench: ## Run the Go micro-benchmarks (codecs, engine, IGMP) with allocation counts
	$(GO) test -run='^$$' -bench=. -benchmem ./...

lint: ## Check formatting (gofmt -l must print nothing) and that go.mod is tidy, and run go vet
	@files=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$files" ]; then echo "gofmt would change:"; echo "$$files"; exit 1; fi
	$(TIDY_CHECK)
	$(GO) vet ./...

install: build ## Install meshcast to $(PREFIX)/bin and its systemd unit to $(UNITDIR) (DESTDIR for staging)
	install -D -m 0755 $(BIN)/meshcast $(DESTDIR)$(PREFIX)/bin/meshcast
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|/usr/local/bin/meshcast|$(PREFIX)/bin/meshcast|' deploy/meshcast.service > $(DESTDIR)$(UNITDIR)/meshcast.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/meshcast.service
	@echo "installed $(DESTDIR)$(PREFIX)/bin/meshcast and $(DESTDIR)$(UNITDIR)/meshcast.service"
	@echo "next: systemctl daemon-reload && systemctl enable --now meshcast"

clean: ## Remove bin/ and the test cache
	rm -rf $(BIN)
	$(GO) clean -testcache
