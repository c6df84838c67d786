/* A bump allocator for everything one batch decodes: protobuf-c allocates
 * each string and sub-message of a frame separately, and a batch holds up to
 * a thousand frames, so one reset replaces tens of thousands of frees. */
#ifndef CB_ARENA_H
#define CB_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

typedef struct cb_arena cb_arena;

cb_arena *cb_arena_new(void);
void cb_arena_destroy(cb_arena **arena_p);
/* size bytes, aligned for any type; NULL when out of memory. */
void *cb_arena_alloc(cb_arena *arena, size_t size);
/* Forget everything allocated; keeps the first block for reuse. */
void cb_arena_reset(cb_arena *arena);
/* An allocator for protobuf-c whose free does nothing: reset frees. */
ProtobufCAllocator *cb_arena_allocator(cb_arena *arena);

#endif
