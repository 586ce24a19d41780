# siamese-wgpu: the two set-up commands are `make demo` and `make test`.
# Both install Mesa's software Vulkan driver (lavapipe) first when no Vulkan driver is
# present (tools/setup-vulkan.sh), so they work on a fresh Debian machine with no GPU.

SHELL := /bin/bash
CARGO ?= cargo

# Mesa warns "XDG_RUNTIME_DIR is invalid" when it is unset; give it a private directory.
RUNTIME_DIR := $(CURDIR)/target/xdg-runtime
export XDG_RUNTIME_DIR := $(RUNTIME_DIR)

.PHONY: demo test bench vulkan rust ci

demo: vulkan rust
	$(CARGO) run --quiet --example demo

test: vulkan rust
	$(CARGO) test

bench: vulkan rust
	$(CARGO) run --release --bin siamese -- bench --model models/cnn --batch 1,64,512

ci:
	bash .ci/run

vulkan:
	@bash tools/setup-vulkan.sh
	@mkdir -p -m 700 $(RUNTIME_DIR)

rust:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs (rustup default stable)" >&2; exit 1; }
