# Sluice build. `make run` and `make test` are the two commands a new machine needs (see README).
CC      ?= gcc
PKGS    := libmicrohttpd gnutls yaml-0.1 libcrypto jansson sqlite3 libcurl libpq avro-c zlib libbrotlienc libzstd liblz4 snappy \
           rdkafka
PKGS    += libmariadb
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -Isrc -Iinclude $(PKG_CFLAGS) -D_GNU_SOURCE -msse4.2 -pthread -MMD -MP
LDLIBS  := $(PKG_LIBS) -lpthread -lm -ldl # -ldl: dlopen (--plugins), in libc since glibc 2.34
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRCS    := $(shell find src -name '*.c' ! -name main.c | sort)
OBJS    := $(SRCS:%.c=build/obj/%.o)
SOBJS   := $(SRCS:%.c=build/san/%.o)
UNITS   := $(wildcard tests/unit/test_*.c)
UBINS   := $(UNITS:tests/unit/%.c=build/tests/%)
USBINS  := $(UNITS:tests/unit/%.c=build/san/tests/%)
COMPS   := $(wildcard tests/component/test_*.c)
CBINS   := $(COMPS:tests/component/%.c=build/tests/component/%)
CSBINS  := $(COMPS:tests/component/%.c=build/san/tests/component/%)
FUZZES  := $(wildcard fuzz/fuzz_*.c)
FBINS   := $(FUZZES:fuzz/%.c=build/fuzz/%)

.SECONDARY:
.PHONY: all deps run test unit-tests fuzz format format-check clean
all: build/sluice

deps:
	@./scripts/install-deps.sh

build/sluice: build/obj/src/main.o $(OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

build/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O1 $(SAN) -c -o $@ $<

build/tests/%: tests/unit/%.c $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $(filter %.c %.o,$^) $(LDLIBS)

build/san/tests/%: tests/unit/%.c $(SOBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O1 $(SAN) -Itests/unit -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# Component tests: the engine in-process with fake connectors (tests/component/), t.h shared.
build/tests/component/%: tests/component/%.c $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $(filter %.c %.o,$^) $(LDLIBS)

build/san/tests/component/%: tests/component/%.c $(SOBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O1 $(SAN) -Itests/unit -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# Benchmark helpers built from the project's objects (bench/framework.sh).
build/bench/%: bench/%.c $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# libFuzzer targets: clang, every source file except main, ASan+UBSan. The sources are compiled
# once (fuzzer-no-link instrumentation) and linked into each target.
FUZZ_CFLAGS := -std=gnu11 -g -O1 -Isrc -Iinclude $(PKG_CFLAGS) -D_GNU_SOURCE -msse4.2 -pthread \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined -DSL_FUZZING
FOBJS   := $(SRCS:%.c=build/fuzzobj/%.o)
build/fuzzobj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<
build/fuzz/%: fuzz/%.c $(FOBJS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# Test peers written in C (tests/peers/*.c): kafka_mock, librdkafka's mock cluster as a process.
PEERBINS := $(patsubst tests/peers/%.c,build/tests/peers/%,$(wildcard tests/peers/*.c))
build/tests/peers/%: tests/peers/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

unit-tests: $(UBINS) $(USBINS) $(CBINS) $(CSBINS) $(PEERBINS)
fuzz: $(FBINS)

run: deps build/sluice
	./build/sluice serve --data ./sluice-data --listen 127.0.0.1:7475

test: deps
	@$(MAKE) --no-print-directory all unit-tests fuzz
	@./tests/run.sh

format:
	clang-format -i $$(find src include tests fuzz bench examples -name '*.[ch]')
format-check:
	@clang-format --dry-run -Werror $$(find src include tests fuzz bench examples -name '*.[ch]')

clean:
	rm -rf build

# Example connector plugins (examples/README.md): examples/NAME.c -> build/examples/NAME.so,
# compiled against include/sluice/connector.h alone (no -Isrc: a plugin sees no internals).
EXAMPLES := $(patsubst examples/%.c,build/examples/%.so,$(wildcard examples/*.c))
PLUGIN_CFLAGS := -std=gnu11 -O2 -g $(WARN) -Iinclude $(shell pkg-config --cflags jansson 2>/dev/null) \
                 -shared -fPIC -fvisibility=hidden
all: $(EXAMPLES)
build/examples/%.so: examples/%.c include/sluice/connector.h
	@mkdir -p $(dir $@)
	$(CC) $(PLUGIN_CFLAGS) -o $@ $< $(shell pkg-config --libs jansson 2>/dev/null)

# the OpenAPI document is built into the server (.incbin in v1_openapi.c)
build/obj/src/api/v1_openapi.o build/san/src/api/v1_openapi.o build/fuzzobj/src/api/v1_openapi.o: docs/openapi.yaml
build/obj/src/api/v1_ui.o build/san/src/api/v1_ui.o build/fuzzobj/src/api/v1_ui.o: ui/index.html ui/app.js ui/app.css

-include $(shell find build -name '*.d' 2>/dev/null)
