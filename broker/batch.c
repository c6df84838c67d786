#include "batch.h"

#include <sodium.h>
#include <stdlib.h>

cb_batch *cb_batch_new(size_t max_out)
{
    cb_batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->arena = cb_arena_new();
    b->out = calloc(max_out, sizeof *b->out);
    if (!b->arena || !b->out)
        cb_batch_free(&b);
    return b;
}

void cb_batch_free(cb_batch **b_p)
{
    cb_batch *b = *b_p;
    if (b) {
        for (size_t i = 0; i < b->n_reqs; i++)
            free(b->reqs[i].reply);
        cb_batch_free_out(b);
        free(b->feed.notes);
        cb_arena_destroy(&b->arena);
        free(b->out);
        free(b);
    }
    *b_p = NULL;
}

cb_publish *cb_batch_add_publish(cb_batch *b, cb_peer_token peer, uint64_t ref, cb_frame *f, uint32_t warnings)
{
    cb_publish *pub = &b->pubs[b->n_pubs];
    *pub = (cb_publish){.peer = peer, .ref = ref, .frame = f, .warnings = warnings};
    pub->len = cb_pack_with(&f->publish->event->base, cb_arena_allocator(b->arena), &pub->bytes);
    if (!pub->bytes)
        return NULL;
    crypto_generichash(pub->digest, sizeof pub->digest, pub->bytes, pub->len, NULL, 0);
    cb_log_person(f->publish->event->person, pub->person);
    b->n_pubs++;
    return pub;
}
