# The two set-up commands: `make demo` and `make test`. Both create .venv and install
# everything they need (system packages for a virtual display too, when run as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1
APT_PKGS := xvfb libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-cursor0 \
	libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
	libxcb-shape0 libxcb-xinerama0 libxcb-xfixes0 libdbus-1-3 libfontconfig1
# napari needs a display: use the real one when there is one, else a virtual one.
XRUN := $(if $(DISPLAY),,xvfb-run -a -s "-screen 0 1600x1000x24")

.PHONY: install system-deps test demo lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) system-deps

system-deps:
	@if [ -z "$(DISPLAY)" ] && ! command -v xvfb-run >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PKGS); \
	  else \
	    echo "napari needs a display: install Xvfb (sudo apt-get install $(APT_PKGS)) or run with DISPLAY set" >&2; exit 1; \
	  fi; \
	fi

test: install
	$(PY) -m ruff check .
	$(XRUN) $(PY) -m pytest -q -p no:cacheprovider

demo: install
	$(XRUN) $(PY) -m napari_l2gnet.demo $(if $(DISPLAY),,--headless)

clean:
	rm -rf $(VENV) build *.egg-info
