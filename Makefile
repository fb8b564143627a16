# Cairn — the commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO     ?= cargo
OSC_VENV  ?= $(HOME)/.cache/cairn/osc-venv
TEMPEST_VENV ?= $(HOME)/.cache/cairn/tempest-venv
RUN_DIR   ?= $(CURDIR)/out/run
RUN_ADDR  ?= 127.0.0.1:8443
APT_PKGS  := iproute2 python3-venv python3-pip ca-certificates curl busybox dnsmasq-base binutils cpio gzip pkg-config lvm2 tgt open-iscsi syslinux syslinux-common xorriso mtools dosfstools
# libvirt 11 from backports: the agent links libvirt (virt crate), and the tests drive a real libvirtd.
VIRT_PKGS := libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-driver-storage \
             libvirt-daemon-driver-storage-logical libvirt-daemon-driver-storage-iscsi \
             libvirt-daemon-driver-storage-rbd libvirt-clients qemu-utils
# Image build and QEMU boots: mkosi 24, systemd 254 (repart, ukify) and QEMU 10 from backports.
BPO_PKGS  := mkosi systemd systemd-container systemd-boot systemd-boot-efi qemu-system-x86 qemu-utils
IMG_PKGS  := bubblewrap uidmap debian-archive-keyring dosfstools e2fsprogs mtools cpio zstd kmod python3-pefile ovmf ipxe-qemu
export CAIRN_OSC_VENV := $(OSC_VENV)
export CAIRN_TEMPEST_VENV := $(TEMPEST_VENV)

IMAGE     := out/cairn-$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1).raw
IMAGE_SRC := mkosi.conf $(shell find rootfs-overlay image-builder agent/src -type f 2>/dev/null)

.PHONY: help deps image-deps test-deps build lint test tempest run run-agent bench bench-boot soak clean image libvirtd

help:
	@echo "make run        build the appliance image if needed and boot it in QEMU (prints URL, CA file, admin credentials)"
	@echo "make image      build the appliance image (disk + PXE) into out/"
	@echo "make run-agent  run just the agent on this machine"
	@echo "make test       install test dependencies, then lint and run every test"
	@echo "make tempest    OpenStack's Tempest API suites against a lone agent (root, libvirtd); TEMPEST_REGEX= narrows"
	@echo "make bench      benchmark the agent (token issue/validate, reads, writes, RSS)"
	@echo "make soak       the nothing-lost test, longer: 10 trials of 60 s (SOAK_TRIALS, SOAK_SECS; root)"
	@echo "make deps       system packages (apt, with bookworm-backports)"
	@echo "make test-deps  the pinned openstack client in $(OSC_VENV)"

# System packages. bookworm-backports is added for the newer QEMU/libvirt/systemd later steps use.
deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps installs packages: run it as root" >&2; exit 1; fi
	@if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	  echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/bookworm-backports.list; fi
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	@missing=$$(for p in $(VIRT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports $(VIRT_PKGS); fi

# libvirtd and virtlogd without systemd (CI and build machines have no systemd as PID 1). With
# /dev/kvm root-only, libvirt re-probes QEMU on every call: give it to the kvm group first.
libvirtd: deps
	@if [ -e /dev/kvm ]; then chgrp kvm /dev/kvm 2>/dev/null; chmod 0660 /dev/kvm; fi
	@mkdir -p /run/libvirt /var/log/libvirt
	@pgrep -x virtlogd >/dev/null || virtlogd --daemon
	@pgrep -x libvirtd >/dev/null || libvirtd --daemon
	@for i in $$(seq 1 50); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.2; done
	@virsh -c qemu:///system version >/dev/null

image-deps: deps
	@missing=$$(for p in $(BPO_PKGS) $(IMG_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports $(BPO_PKGS) && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(IMG_PKGS); fi

# The appliance image (disk + PXE) in out/, rebuilt when its sources change.
image: $(IMAGE)
$(IMAGE): $(IMAGE_SRC) | image-deps
	$(CARGO) run --release -p cairn-image -- --out out

# The openstack client the interop tests drive, pinned.
test-deps: deps
	@if ! $(OSC_VENV)/bin/python -c 'import importlib.metadata as m; assert m.version("python-openstackclient") == "10.5.0"' 2>/dev/null; then \
	  echo "creating $(OSC_VENV) (pinned python-openstackclient)"; \
	  python3 -m venv $(OSC_VENV) && \
	  $(OSC_VENV)/bin/pip install -q -r agent/tests/data/osc-requirements.txt; fi
	@if ! $(TEMPEST_VENV)/bin/python -c 'import importlib.metadata as m; assert m.version("tempest") == "47.0.0"' 2>/dev/null; then \
	  echo "creating $(TEMPEST_VENV) (pinned Tempest)"; \
	  python3 -m venv $(TEMPEST_VENV) && \
	  $(TEMPEST_VENV)/bin/pip install -q -r agent/tests/data/tempest/requirements.txt; fi

build: deps
	$(CARGO) build --release --bin cairn

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

test: test-deps image-deps libvirtd lint image
	$(CARGO) test --workspace
	CAIRN_TEMPEST_REGEX= $(CARGO) test -p cairn-agent --test tempest -- --ignored --nocapture

# OpenStack's own Tempest (pinned) against a lone agent on the real libvirtd; prints N passed,
# F failed, S skipped and fails on any failure. `make test` runs the whole selection after the
# other tests; TEMPEST_REGEX= narrows a run by hand.
TEMPEST_REGEX ?=
tempest: test-deps libvirtd
	CAIRN_TEMPEST_REGEX='$(TEMPEST_REGEX)' $(CARGO) test -p cairn-agent --test tempest -- --ignored --nocapture

# Boots the appliance image in QEMU (building it when missing or stale) with its API forwarded
# to the host; prints the URL, the CA file and the admin credentials. Ctrl-C stops it.
run: image-deps image
	$(CARGO) run --release -q -p cairn-qemu-test --bin cairn-run

# Runs just the agent on this machine, without the appliance, on $(RUN_ADDR).
run-agent: build
	@mkdir -p $(RUN_DIR)
	@echo "Cairn API https://$(RUN_ADDR)/identity/v3  CA $(RUN_DIR)/pki/ca.pem  admin password: $(RUN_DIR)/admin-password (after first start)"
	exec ./target/release/cairn agent --config /dev/null --data-dir $(RUN_DIR) --listen $(RUN_ADDR)

bench: build
	./target/release/cairn bench

# Rally-style boot-and-delete on a compute node started for it (root, libvirtd), with the test
# guest so guest boot is timed too.
SOAK_TRIALS ?= 10
SOAK_SECS   ?= 60
# Writes at random nodes while nodes are killed and cut off; every acknowledged write must be on
# every node once. CAIRN_SOAK_SEED=N repeats a run.
soak: deps
	CAIRN_SOAK_TRIALS=$(SOAK_TRIALS) CAIRN_SOAK_SECS=$(SOAK_SECS) $(CARGO) test -p cairn-agent --test nothing_lost -- --nocapture

bench-boot: build libvirtd
	./target/release/cairn bench --ops boot --guest "$$($(CARGO) run -q --release -p cairn-qemu-test --bin cairn-test-guest)"

clean:
	$(CARGO) clean
	rm -rf out
