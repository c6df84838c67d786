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

/* A point to return to: a frame that turns out to need nothing kept (a
 * heartbeat, a refusal) gives its memory back at once, so a flood of such
 * frames cannot grow a batch's arena. */
typedef struct {
    const void *block;
    size_t used;
} cb_arena_mark;
cb_arena_mark cb_arena_save(const cb_arena *arena);
/* Free everything allocated since mark (which must be this arena's, and not
 * older than its last reset). */
void cb_arena_restore(cb_arena *arena, cb_arena_mark mark);
/* An allocator for protobuf-c whose free does nothing: reset frees. */
ProtobufCAllocator *cb_arena_allocator(cb_arena *arena);

#endif
