# Sluice build. `make run` and `make test` are the two commands a new machine needs (see README).
CC      ?= gcc
PKGS    := libmicrohttpd yaml-0.1 libcrypto jansson sqlite3 libcurl libpq avro-c zlib libzstd liblz4 snappy
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -Isrc $(PKG_CFLAGS) -D_GNU_SOURCE -msse4.2 -pthread -MMD -MP
LDLIBS  := $(PKG_LIBS) -lpthread -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRCS    := $(shell find src -name '*.c' ! -name main.c | sort)
OBJS    := $(SRCS:%.c=build/obj/%.o)
SOBJS   := $(SRCS:%.c=build/san/%.o)
UNITS   := $(wildcard tests/unit/test_*.c)
UBINS   := $(UNITS:tests/unit/%.c=build/tests/%)
USBINS  := $(UNITS:tests/unit/%.c=build/san/tests/%)
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

# libFuzzer targets: clang, every source file except main, ASan+UBSan.
FUZZ_CFLAGS := -std=gnu11 -g -O1 -Isrc $(PKG_CFLAGS) -D_GNU_SOURCE -msse4.2 -pthread \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -DSL_FUZZING
build/fuzz/%: fuzz/%.c $(SRCS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^) $(LDLIBS)

unit-tests: $(UBINS) $(USBINS)
fuzz: $(FBINS)

run: deps build/sluice
	./build/sluice serve --data ./sluice-data --listen 127.0.0.1:7475

test: deps
	@$(MAKE) --no-print-directory all unit-tests fuzz
	@./tests/run.sh

format:
	clang-format -i $$(find src tests fuzz bench -name '*.[ch]')
format-check:
	@clang-format --dry-run -Werror $$(find src tests fuzz bench -name '*.[ch]')

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
