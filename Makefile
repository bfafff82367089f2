# Two commands on a fresh Debian 12 machine:
#   make run    install missing Debian packages, build, open the app on the demo model
#   make test   the same set-up, then the whole suite headless, ending "N passed, N failed"
BUILD ?= _build
MESON_FLAGS ?=

DEB_PACKAGES = gcc make meson ninja-build pkg-config python3 \
  libglib2.0-dev libglib2.0-bin libgtk-4-dev libadwaita-1-dev libjson-glib-dev \
  libopenblas-dev libdnnl-dev libpcre2-dev libsoup-3.0-dev python3-yaml gettext desktop-file-utils appstream libxml2-utils \
  xvfb xauth dbus-daemon libvulkan-dev glslc mesa-vulkan-drivers

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps setup build run test clean demo-model screenshots

all: build

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_FLAGS)

setup: deps $(BUILD)/build.ninja

build: setup
	meson compile -C $(BUILD)

run: build
	GSETTINGS_SCHEMA_DIR=$(BUILD)/data $(BUILD)/src/app/lathe-gtk

test: build
	@set +e; \
	xvfb-run -a -s "-screen 0 1280x1024x24" meson test -C $(BUILD) --print-errorlogs \
	  --num-processes 2 $(TESTARGS) > $(BUILD)/test-output.txt 2>&1; \
	status=$$?; \
	cat $(BUILD)/test-output.txt; \
	python3 tests/tools/summarize-tests.py $(BUILD)/meson-logs/testlog.json; \
	exit $$status

clean:
	rm -rf $(BUILD)

# data/screenshots/ from the current UI: the Train tab (Fine-tune), a run mid-way, the Runs page
# with a comparison and the Export result, rendered headless (tests/tools/screenshot.sh).
screenshots: build
	tests/tools/screenshot.sh $(BUILD)

# data/demo: a tiny Llama trained from random initialization by Lathe's own trainer (full
# fine-tuning) on a corpus and a byte-level BPE tokenizer that data/demo/generate.py writes
# (Python standard library only), plus small SFT and preference datasets.
DEMO_WORK = $(BUILD)/demo-work
demo-model: build
	rm -rf $(DEMO_WORK) && python3 data/demo/generate.py $(DEMO_WORK)
	$(BUILD)/src/cli/lathe train --model $(DEMO_WORK)/init --data $(DEMO_WORK)/corpus \
	  --train-type full --iters 60 --batch-size 8 --learning-rate 3e-3 --optimizer adamw \
	  --max-seq-length 96 --steps-per-report 10 --steps-per-eval 30 --save-every 0 \
	  --seed 0 --adapter-path $(DEMO_WORK)/run
	rm -rf data/demo/model data/demo/sft data/demo/preference
	mkdir -p data/demo/model
	cp $(DEMO_WORK)/init/config.json $(DEMO_WORK)/init/generation_config.json \
	  $(DEMO_WORK)/init/tokenizer.json $(DEMO_WORK)/init/tokenizer_config.json data/demo/model/
	cp $(DEMO_WORK)/run/adapters.safetensors data/demo/model/model.safetensors
	cp $(DEMO_WORK)/run/metrics.jsonl data/demo/model/training-metrics.jsonl
	cp -r $(DEMO_WORK)/sft $(DEMO_WORK)/preference data/demo/
	du -sh data/demo
