# The two commands a new user needs: `make run` and `make test`.
# Both install any missing Debian packages (scripts/packages.txt), configure and build.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
RELEASE_BUILD ?= build-release
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps test-deps build run test test-asan test-tsan test-fast build-release bench clean docker-test

all: build

deps:
	@scripts/install-deps

# The tests' own extra: the FHIR R4 schema validator (npm).
test-deps: deps
	@scripts/install-test-deps

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The broker and the three adapters on the embedded defaults; Ctrl-C stops them all.
run: build
	scripts/run-all $(BUILD)/bin

# The whole suite, then the same suite under ASan+UBSan and under TSan, and a
# Release build (-O3: GCC finds truncations there that -O2 does not).
test: build test-deps
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-tsan
	$(MAKE) --no-print-directory build-release

test-fast: build test-deps
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: test-deps
	cmake -S . -B $(ASAN_BUILD) -DCB_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

# The broker has two threads: the suite again under ThreadSanitizer.
test-tsan: test-deps
	cmake -S . -B $(TSAN_BUILD) -DCB_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && ctest --output-on-failure -j $(JOBS)

build-release: deps
	cmake -S . -B $(RELEASE_BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(RELEASE_BUILD) -j $(JOBS)

bench: build
	bench/run

# The image and compose file in docker/, built and run end to end (needs a container engine).
docker-test:
	docker/test

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(RELEASE_BUILD)

# libFuzzer (clang) on each parser for FUZZ_SECONDS, on a copy of its corpus.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: deps
	@command -v clang >/dev/null || { echo "make fuzz needs clang: apt-get install clang libclang-rt-14-dev"; exit 1; }
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCB_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers
	@for c in tests/fuzz/corpus/*; do n=$${c##*/}; d=$$(mktemp -d /tmp/carebridge-fuzz-$$n.XXXXXX); cp $$c/* $$d/; \
	  $(FUZZ_BUILD)/tests/$${n}_fuzzer -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -artifact_prefix=$$d/ $$d \
	    || { echo "fuzz: $$n failed; the reproducer is in $$d"; exit 1; }; \
	  echo "fuzz: $$n: $$(ls $$d | wc -l) inputs in $$d ($$(ls $$c | wc -l) kept); keep new ones with" \
	    "$(FUZZ_BUILD)/tests/$${n}_fuzzer -merge=1 $$c $$d"; done
