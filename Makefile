# appendlog: build and install targets, as Qubes components have them.
#
#   make vendor          (network: npm registry) the vendored npm dependencies,
#                        appendlog-deps-$(VERSION).tar.gz and its .sha512
#   make                 build offline from that tarball into build/
#   make install-vm      log VM and build VM: tools, service, man pages, completion
#   make install-dom0    dom0: the qrexec policy
#   make dist            release artifacts in build/dist/, with SHA256SUMS
#
# Every install target honours DESTDIR (and PREFIX etc. below). Nothing after
# `make vendor` touches the network: npm installs from the vendored registry
# tarballs, each checked against package-lock.json's sha512, and native
# modules compile against the Node headers in $(NODEDIR)/include/node (the
# distribution's: Debian libnode-dev, Fedora nodejs-devel). No @appendlog/*
# package ever comes from a registry: they are the workspace itself.

VERSION := $(shell cat version)
DESTDIR ?=
PREFIX ?= /usr
APPDIR ?= $(PREFIX)/lib/appendlog
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
QUBESRPCDIR ?= /etc/qubes-rpc
POLICYDIR ?= /etc/qubes/policy.d

NODE ?= node
NPM ?= npm
NODEDIR ?= /usr
# node-gyp's JavaScript entry (run by $(NODE)): npm's own, else Debian's. Not
# a `node-gyp` found on PATH first: under npm scripts that is a shell wrapper.
NODE_GYP ?= $(firstword $(npm_config_node_gyp) $(wildcard /usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js /usr/share/nodejs/node-gyp/bin/node-gyp.js /usr/lib/node_modules/node-gyp/bin/node-gyp.js) $(shell command -v node-gyp 2>/dev/null))

DEPS := appendlog-deps-$(VERSION).tar.gz
B := build
STAGE := $(B)/stage
VENDOR := $(B)/deps
VERIFIER := $(B)/appendlog-verify-$(VERSION).cjs
# Service files: everything in rpc/ but policies and dotfiles.
SERVICES := $(filter-out %.policy,$(wildcard rpc/*))
POLICIES := $(wildcard rpc/*.policy)
PKGS := shared log-vm log-sender

# npm with no user or global configuration, no registry and no scripts:
# the build is the same on any machine, and cannot reach out.
NPM_OFFLINE := npm_config_userconfig=$(abspath $(B))/no-user-npmrc npm_config_globalconfig=$(abspath $(B))/no-global-npmrc \
	$(NPM) --offline --ignore-scripts --no-audit --no-fund --cache=$(abspath $(B)/npm-cache)

.PHONY: all build vendor vendor-check install-vm install-dom0 dist srctar clean check-nodedir

all: build

vendor:
	$(NODE) scripts/vendor.mjs pack $(DEPS)

# The tarball must be the one the committed .sha512 names (qubes-builderv2
# checks the same file, see .qubesbuilder).
vendor-check:
	@test -f $(DEPS) || { echo "make: $(DEPS) is missing: run 'make vendor' once, with network (or fetch it and check $(DEPS).sha512)"; exit 1; }
	@printf '%s  %s\n' "$$(cat $(DEPS).sha512)" $(DEPS) | sha512sum --quiet -c - || { echo "make: $(DEPS) does not match $(DEPS).sha512"; exit 1; }
	@echo "make: $(DEPS): sha512 matches $(DEPS).sha512"

check-nodedir:
	@test -f $(NODEDIR)/include/node/node_api.h || { echo "make: no Node headers in $(NODEDIR)/include/node (install libnode-dev or nodejs-devel, or set NODEDIR)"; exit 1; }
	@test -n "$(NODE_GYP)" || { echo "make: node-gyp not found (install node-gyp or npm, or set NODE_GYP)"; exit 1; }

$(VENDOR)/.unpacked: $(DEPS) $(DEPS).sha512
	$(MAKE) vendor-check
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)
	tar xzf $(DEPS) -C $(VENDOR) --strip-components=1
	touch $@

build: $(STAGE)/.built $(VERIFIER) $(B)/man/logvm.1 $(B)/man/logsend.1 $(B)/completion/logvm $(B)/completion/logsend

# The dependencies: npm ci from the vendored files, native modules compiled.
$(STAGE)/.deps: $(VENDOR)/.unpacked package.json package-lock.json packages/shared/package.json packages/log-vm/package.json packages/log-sender/package.json | check-nodedir
	rm -rf $(STAGE) && mkdir -p $(STAGE)/packages
	cp package.json $(STAGE)/
	for p in $(PKGS); do mkdir -p $(STAGE)/packages/$$p && cp packages/$$p/package.json $(STAGE)/packages/$$p/; done
	# package-lock.json with every registry package resolved to its vendored file
	$(NODE) scripts/vendor.mjs lock $(VENDOR) package-lock.json $(STAGE)/package-lock.json
	cd $(STAGE) && $(NPM_OFFLINE) ci
	# better-sqlite3 from source against the distribution's Node headers
	# (its install script would try to download a prebuilt binary first).
	# (node-gyp lets npm_config_* variables override its command line, so set that too.)
	cd $(STAGE)/node_modules/better-sqlite3 && npm_config_nodedir=$(NODEDIR) $(NODE) $(NODE_GYP) rebuild --release --nodedir=$(NODEDIR)
	# zstd-napi (.tar.zst bundles on a Node without zlib zstd, such as Debian's
	# Node 20) from its bundled libzstd sources; its install script would also
	# try a prebuilt download first.
	cd $(STAGE)/node_modules/zstd-napi && npm_config_nodedir=$(NODEDIR) $(NODE) $(NODE_GYP) rebuild --release --nodedir=$(NODEDIR)
	touch $@

# The sources, compiled.
SOURCES := $(shell find packages/*/src packages/*/bin packages/*/assets packages/shared/native -type f -not -path '*/build/*' 2>/dev/null) tsconfig.base.json tsconfig.json $(wildcard scripts/*.mjs)
$(STAGE)/.built: $(STAGE)/.deps $(SOURCES)
	rm -rf $(STAGE)/scripts $(foreach p,$(PKGS),$(STAGE)/packages/$(p)/src $(STAGE)/packages/$(p)/bin $(STAGE)/packages/$(p)/assets $(STAGE)/packages/$(p)/dist $(STAGE)/packages/$(p)/tsconfig.tsbuildinfo)
	cp -r tsconfig.base.json tsconfig.json scripts $(STAGE)/
	for p in $(PKGS); do cp -r packages/$$p/tsconfig.json packages/$$p/src $(STAGE)/packages/$$p/; \
	  if [ -d packages/$$p/bin ]; then cp -r packages/$$p/bin $(STAGE)/packages/$$p/; fi; \
	  if [ -d packages/$$p/assets ]; then cp -r packages/$$p/assets $(STAGE)/packages/$$p/; fi; done
	rm -rf $(STAGE)/packages/shared/native && cp -r packages/shared/native $(STAGE)/packages/shared/ && rm -rf $(STAGE)/packages/shared/native/build
	cd $(STAGE) && npm_config_nodedir=$(NODEDIR) npm_config_node_gyp=$(NODE_GYP) $(NODE) scripts/build-native.mjs
	cd $(STAGE) && $(NODE) node_modules/typescript/bin/tsc -b
	cd $(STAGE) && $(NODE) scripts/bundle-yargs.mjs
	touch $@

$(VERIFIER): $(STAGE)/.built
	cd $(STAGE) && $(NODE) scripts/build-verifier.mjs $(abspath $(B))

$(B)/man/%.1: docs/man/%.1.md scripts/md2man.mjs $(STAGE)/.built
	@mkdir -p $(B)/man
	$(NODE) scripts/md2man.mjs $< $(STAGE) > $@.tmp && mv $@.tmp $@

# yargs writes the completion scripts (bash; zsh users: `logvm completion` in zsh).
$(B)/completion/logvm: $(STAGE)/.built
	@mkdir -p $(B)/completion
	SHELL=/bin/bash $(NODE) $(STAGE)/packages/log-vm/bin/logvm.js completion > $@
$(B)/completion/logsend: $(STAGE)/.built
	@mkdir -p $(B)/completion
	SHELL=/bin/bash $(NODE) $(STAGE)/packages/log-sender/bin/logsend.js --completion-script > $@

install-vm: build
	rm -rf $(B)/install && mkdir -p $(B)/install
	# the runtime tree: production dependencies only, no sources, no type maps
	cp -a $(STAGE) $(B)/install/app
	cd $(B)/install/app && $(NPM_OFFLINE) prune --omit=dev
	cd $(B)/install/app && rm -rf scripts tsconfig*.json .built .deps node_modules/.package-lock.json \
	  packages/*/src packages/*/tsconfig.json packages/*/tsconfig.tsbuildinfo \
	  packages/shared/native/chainhash.cc packages/shared/native/binding.gyp \
	  node_modules/better-sqlite3/deps node_modules/better-sqlite3/src \
	  node_modules/better-sqlite3/build/Release/obj.target node_modules/better-sqlite3/build/Release/.deps \
	  node_modules/better-sqlite3/build/Release/test_extension.node node_modules/better-sqlite3/build/deps \
	  node_modules/zstd-napi/deps node_modules/zstd-napi/src \
	  node_modules/zstd-napi/build/Release/obj.target node_modules/zstd-napi/build/Release/.deps \
	  node_modules/zstd-napi/build/deps
	# Type declarations only: zstd-napi lists @types/node (and so undici-types)
	# as a runtime dependency, but nothing reads a .d.ts at run time.
	cd $(B)/install/app && rm -rf node_modules/@types node_modules/undici-types
	cd $(B)/install/app/node_modules/zstd-napi/build && find . -mindepth 1 -not -path ./Release -not -path ./Release/binding.node -delete
	cd $(B)/install/app && find packages -name '*.d.ts' -o -name '*.d.ts.map' -o -name '*.js.map' | xargs rm -f
	cd $(B)/install/app && rm -f package-lock.json && find node_modules -mindepth 1 -type d -empty -delete
	cd $(B)/install/app/packages/shared/native && if [ -d build ]; then find build -mindepth 1 -not -path 'build/Release' -not -path 'build/Release/chainhash.node' -delete 2>/dev/null || true; fi
	install -d $(DESTDIR)$(APPDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(QUBESRPCDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR)
	cp -a $(B)/install/app/. $(DESTDIR)$(APPDIR)/
	chmod -R u+rwX,go+rX,go-w $(DESTDIR)$(APPDIR)
	chmod 0755 $(DESTDIR)$(APPDIR)/packages/log-vm/bin/logvm.js $(DESTDIR)$(APPDIR)/packages/log-sender/bin/logsend.js
	ln -sf $(APPDIR)/packages/log-vm/bin/logvm.js $(DESTDIR)$(BINDIR)/logvm
	ln -sf $(APPDIR)/packages/log-sender/bin/logsend.js $(DESTDIR)$(BINDIR)/logsend
	for s in $(SERVICES); do install -m 0755 $$s $(DESTDIR)$(QUBESRPCDIR)/; done
	install -m 0644 $(B)/man/logvm.1 $(B)/man/logsend.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(B)/completion/logvm $(B)/completion/logsend $(DESTDIR)$(BASHCOMPDIR)/

install-dom0:
	install -d $(DESTDIR)$(POLICYDIR)
	for p in $(POLICIES); do install -m 0644 $$p $(DESTDIR)$(POLICYDIR)/; done

# Release artifacts: source tarball (git HEAD), the vendored dependencies,
# the single-file verifier, and their SHA-256 sums.
srctar:
	mkdir -p $(B)/dist
	git archive --format=tar --prefix=appendlog-$(VERSION)/ HEAD | gzip -9n > $(B)/dist/appendlog-$(VERSION).tar.gz

dist: $(VERIFIER) vendor-check srctar
	cp $(DEPS) $(DEPS).sha512 $(VERIFIER) $(B)/dist/
	cd $(B)/dist && sha256sum appendlog-$(VERSION).tar.gz $(DEPS) appendlog-verify-$(VERSION).cjs > SHA256SUMS
	@cat $(B)/dist/SHA256SUMS

clean:
	rm -rf $(B)

# The rpm specs, rendered as qubes-builderv2 does (@VERSION@, @REL@, @CHANGELOG@).
rpm_spec/%.spec: rpm_spec/%.spec.in version rel
	sed -e 's/@VERSION@/$(VERSION)/g' -e "s/@REL@/$$(cat rel)/g" -e 's/@CHANGELOG@//' $< > $@
