# Djinn - build, test, bundle.  `make` builds build/djinn and build/libdjinn.a;
# the CUDA backend is built whenever nvcc is found (make CUDA=0 to leave it out).

CC       ?= cc
BUILD    ?= build
NVCC     ?= $(shell command -v nvcc 2>/dev/null)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
ifeq ($(NVCC),)
CUDA     ?= 0
else
CUDA     ?= 1
endif
SAN      ?= 0
FUZZ     ?= 0
OPT      ?= -O2

LUA_CFLAGS := $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
LUA_LIBS   := $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)

CPPFLAGS += -Iinclude -Isrc $(LUA_CFLAGS) -D_GNU_SOURCE -DDJN_HAVE_CUDA=$(CUDA)
CFLAGS   += -std=c11 $(OPT) -g -pthread -Wall -Wextra -Wshadow -Wno-unused-parameter \
            -Wno-missing-field-initializers -fno-strict-aliasing
LDLIBS   += $(LUA_LIBS) -lcjson -lreadline -lm -lpthread
ifeq ($(FUZZ),1)
CFLAGS   += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
endif
ifeq ($(SAN),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif

CUDA_ARCH ?= -gencode=arch=compute_90,code=sm_90
NVFLAGS  += -O3 -std=c++17 $(CUDA_ARCH) -Iinclude -Isrc -DDJN_HAVE_CUDA=1 -Xcompiler -fPIC,-Wall \
            -lineinfo --expt-relaxed-constexpr
ifeq ($(CUDA),1)
CUDA_LIBS = -L$(CUDA_HOME)/lib64 -Wl,-rpath,'$$ORIGIN/lib' -Wl,-rpath,$(CUDA_HOME)/lib64 \
            -lcublasLt -lcublas -lcudart_static -ldl -lrt -lstdc++
endif

LIB_SRCS := $(wildcard src/core/*.c src/backend/*.c src/backend/cpu/*.c src/model/*.c \
              src/vmu/*.c src/ringbuf/*.c src/exec/*.c src/sched/*.c src/shell/*.c src/lua/*.c \
              src/server/*.c)
CU_SRCS  := $(if $(filter 1,$(CUDA)),$(wildcard src/backend/cuda/*.cu))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(CU_SRCS:%.cu=$(BUILD)/%.cu.o)

UNIT_SRCS := $(wildcard tests/unit/test-*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
GPU_SRCS  := $(wildcard tests/gpu/test-*.c)
GPU_BINS  := $(GPU_SRCS:tests/gpu/%.c=$(BUILD)/tests/gpu-%)

.PHONY: all lib test test-unit test-gpu demo deps models clean fuzz fuzz-bins bundle test-unit-bins bench-bins

all: $(BUILD)/djinn $(BUILD)/libdjinn.a

$(BUILD)/libdjinn.a: $(LIB_OBJS)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(BUILD)/djinn: $(BUILD)/src/main.o $(BUILD)/libdjinn.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(BUILD)/libdjinn.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libdjinn.a $(CUDA_LIBS) -lcriterion $(LDLIBS)

BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
bench-bins: $(BENCH_BINS)
$(BUILD)/bench/%: bench/%.c $(wildcard bench/*.h) $(BUILD)/libdjinn.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libdjinn.a $(CUDA_LIBS) $(LDLIBS)

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)
fuzz-bins: $(FUZZ_BINS)
$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/libdjinn.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(BUILD)/libdjinn.a $(LDLIBS)

$(BUILD)/tests/gpu-%: tests/gpu/%.c $(BUILD)/libdjinn.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libdjinn.a $(CUDA_LIBS) -lcriterion $(LDLIBS)

# --- dependencies and models --------------------------------------------
deps:
	@scripts/install-deps.sh

models:
	@scripts/models.sh

# --- the main job: SmolLM2-135M-Instruct, greedy, on the best device ----
demo: deps models all
	$(BUILD)/djinn generate models/SmolLM2-135M-Instruct.Q4_1.gguf \
	    -p "What is the capital of France?" --chat -n 64 -t 0

# --- tests ----------------------------------------------------------------
test-unit-bins: $(UNIT_BINS)

test-unit: $(UNIT_BINS) $(BUILD)/djinn
	@scripts/run-tests.sh $(BUILD) $(UNIT_BINS)

test: deps models
	@scripts/test.sh

test-gpu: $(GPU_BINS) $(BUILD)/djinn
	@scripts/run-tests.sh $(BUILD) $(GPU_BINS)

fuzz:
	@scripts/fuzz.sh

bundle: all
	@scripts/bundle.sh $(BUILD)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
