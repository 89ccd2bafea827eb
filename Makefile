# Tandem: the two commands of the README.
#   make demo   runs the demo (five namespaces, a bad link, a transfer direct and through Tandem)
#   make test   installs everything (apt packages, npm ci, native addon, build) and runs every test
#   make deb    builds the Debian package (after make setup)
.PHONY: all setup build test lint demo bench clean deb

all: setup

setup:
	sh scripts/setup.sh

build:
	npm run --silent build

lint:
	npm run --silent typecheck
	npm run --silent lint

test: setup lint
	npm test
	npm run test:netns

demo: setup
	sh scripts/demo.sh

bench:
	sh scripts/setup.sh --bench
	npm run bench

clean:
	rm -rf dist native/build

# The Debian package (dist/deb/tandem_VERSION_ARCH.deb) from this built checkout; no network.
# dist/src and dist/native are rebuilt from scratch, so no file of an older layout is packaged.
deb:
	rm -rf dist/src dist/native
	npm run --silent build
	sh scripts/build-deb.sh
