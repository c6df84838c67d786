#include "cb_arena.h"

#include <stdalign.h>
#include <stdlib.h>

#define BLOCK_BYTES (1 << 20)

typedef struct block {
    struct block *next;
    size_t size, used;
    alignas(max_align_t) unsigned char data[];
} block;

struct cb_arena {
    block *head; /* the block being filled; earlier ones follow */
    ProtobufCAllocator allocator;
};

static void *arena_alloc(void *data, size_t size)
{
    return cb_arena_alloc(data, size);
}

static void arena_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr; /* freed all at once by cb_arena_reset */
}

cb_arena *cb_arena_new(void)
{
    cb_arena *a = calloc(1, sizeof *a);
    if (a)
        a->allocator = (ProtobufCAllocator){arena_alloc, arena_free, a};
    return a;
}

static block *new_block(size_t at_least)
{
    size_t size = at_least > BLOCK_BYTES ? at_least : BLOCK_BYTES;
    block *b = malloc(sizeof *b + size);
    if (b)
        *b = (block){.size = size};
    return b;
}

void *cb_arena_alloc(cb_arena *a, size_t size)
{
    size = (size + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    if (!a->head || a->head->size - a->head->used < size) {
        block *b = new_block(size);
        if (!b)
            return NULL;
        b->next = a->head;
        a->head = b;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += size;
    return p;
}

void cb_arena_reset(cb_arena *a)
{
    /* Keep one block, the oldest: it is a standard size. */
    while (a->head && a->head->next) {
        block *b = a->head;
        a->head = b->next;
        free(b);
    }
    if (a->head)
        a->head->used = 0;
}

cb_arena_mark cb_arena_save(const cb_arena *a)
{
    return (cb_arena_mark){a->head, a->head ? a->head->used : 0};
}

void cb_arena_restore(cb_arena *a, cb_arena_mark mark)
{
    /* Blocks newer than the mark's hold only what came after it. */
    while (a->head && a->head != mark.block) {
        block *b = a->head;
        a->head = b->next;
        free(b);
    }
    if (a->head)
        a->head->used = mark.used;
}

void cb_arena_destroy(cb_arena **a_p)
{
    cb_arena *a = *a_p;
    if (a) {
        cb_arena_reset(a);
        free(a->head);
        free(a);
    }
    *a_p = NULL;
}

ProtobufCAllocator *cb_arena_allocator(cb_arena *a)
{
    return &a->allocator;
}
