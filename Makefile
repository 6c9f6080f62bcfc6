# sluice — build, test, demo, bench.
# `make` builds ./sluice and ./sluice-origin. Every .c under src/ is part of
# sluice; every tests/unit/test_*.c is one unit-test binary linked against all
# of src/ except main.c; every fuzz/fuzz_*.c is one libFuzzer target.

CC      ?= cc
PKGS    := libfyaml libxxhash libpcre2-8 openssl libnghttp2 libcares libmaxminddb
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wstrict-prototypes
CPPFLAGS_ALL := -std=gnu11 -D_GNU_SOURCE -Isrc $(shell pkg-config --cflags $(PKGS))
LDLIBS_ALL   := $(shell pkg-config --libs $(PKGS)) -lcrypt -lpthread -lm
PREFIX  ?= /usr/local
PYTHON  := /usr/bin/python3

SRCS      := $(shell find src -name '*.c' | sort)
LIB_SRCS  := $(filter-out src/main.c,$(SRCS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
FUZZ_SRCS := $(wildcard fuzz/fuzz_*.c)

# Normal build in build/, sanitizer build in build/asan/.
B ?= build
OBJS      := $(SRCS:%.c=$(B)/%.o)
LIB_OBJS  := $(LIB_SRCS:%.c=$(B)/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/unit/%)

.PHONY: all deps test test-unit test-integration test-fuzz test-asan demo bench install clean

all: sluice sluice-origin

sluice: $(B)/sluice
	@[ "$(B)" != build ] || cp --remove-destination $< $@
sluice-origin: $(B)/sluice-origin
	@[ "$(B)" != build ] || cp --remove-destination $< $@

$(B)/sluice: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(B)/sluice-origin: tools/sluice-origin.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS) $(WARN) $(LDFLAGS) -o $@ $< -lpthread

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS) $(WARN) -MMD -MP -c -o $@ $<

$(B)/unit/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) -Itests/unit $(CFLAGS) $(WARN) $(LDFLAGS) -o $@ $^ $(LDLIBS_ALL)

# The microbenchmarks that link sluice's own code (bench/micro/; relay_io.c
# links none) are built, not run, by test-unit, so that they keep building
# as the code moves. Run them by hand: build/micro/route_match, ...
MICRO_SRCS := bench/micro/balance_pick.c bench/micro/http1_parse.c bench/micro/route_match.c
MICRO_BINS := $(MICRO_SRCS:bench/micro/%.c=$(B)/micro/%)

$(B)/micro/%: bench/micro/%.c $(LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS) $(WARN) $(LDFLAGS) -o $@ $^ $(LDLIBS_ALL)

-include $(OBJS:.o=.d)

deps:
	@./scripts/deps.sh

test-unit: $(UNIT_BINS) $(MICRO_BINS)
	@./scripts/run-unit.sh $(UNIT_BINS)

test-integration: all
	SLUICE_BIN=$(CURDIR)/$(B)/sluice ORIGIN_BIN=$(CURDIR)/$(B)/sluice-origin \
	    $(PYTHON) -m pytest -q -x tests/integration

# Short bounded fuzz runs; docs/fuzzing.md has the long ones.
FUZZ_SECONDS ?= 20
test-fuzz:
	@./scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_SRCS)

# The whole suite again under ASan+UBSan, in its own build tree.
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
test-asan: deps
	$(MAKE) B=build/asan CFLAGS="$(ASAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" \
	    build/asan/sluice build/asan/sluice-origin test-unit test-integration

test: deps
	$(MAKE) all
	$(MAKE) test-unit
	$(MAKE) test-integration
	$(MAKE) test-fuzz
	$(MAKE) test-asan

demo: deps all
	@./scripts/demo.sh

bench: deps all
	@./bench/run.sh

install: all
	install -D -m 0755 sluice $(DESTDIR)$(PREFIX)/bin/sluice
	install -D -m 0755 sluice-origin $(DESTDIR)$(PREFIX)/bin/sluice-origin

clean:
	rm -rf build sluice sluice-origin
