#include "pending.h"

#include <stdio.h>
#include <stdlib.h>

#include "client.h"

typedef struct {
    void *item;
    uint64_t seq;
    bool fresh;          /* NEW in the outbox: the broker's answer is worth waiting for */
    bool durable;        /* its batch committed */
    int64_t deadline_ms; /* durable: answered without the broker's word by then */
} entry;

struct cb_pending {
    cb_adapter *a;
    int wait_ms;
    cb_pending_fns fns;
    void *arg;
    entry *e;
    size_t n, cap;
};

cb_pending *cb_pending_new(cb_adapter *a, int wait_ms, const cb_pending_fns *fns, void *arg)
{
    cb_pending *p = calloc(1, sizeof *p);
    if (p)
        *p = (cb_pending){.a = a, .wait_ms = wait_ms, .fns = *fns, .arg = arg};
    return p;
}

/* Take entry i out, then answer it: an answer may add or drop items. */
static entry take(cb_pending *p, size_t i)
{
    entry e = p->e[i];
    p->e[i] = p->e[--p->n];
    return e;
}

void cb_pending_end(cb_pending **p_p)
{
    cb_pending *p = *p_p;
    if (!p)
        return;
    while (p->n) {
        entry e = take(p, p->n - 1);
        if (e.durable) /* kept: say so before going */
            p->fns.accepted(p->arg, e.item, NULL);
        else
            p->fns.failed(p->arg, e.item);
    }
    free(p->e);
    free(p);
    *p_p = NULL;
}

bool cb_pending_add(cb_pending *p, void *item, uint64_t seq, bool fresh)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        entry *e = realloc(p->e, cap * sizeof *e);
        if (!e)
            return false;
        p->e = e;
        p->cap = cap;
    }
    p->e[p->n++] = (entry){.item = item, .seq = seq, .fresh = fresh};
    return true;
}

void cb_pending_committed(cb_pending *p, bool ok)
{
    bool wait = p->wait_ms > 0 && cb_adapter_answers_expected(p->a);
    int64_t deadline = cb_client_now_ms() + p->wait_ms;
    for (size_t i = 0; i < p->n;) {
        entry *e = &p->e[i];
        char why[320];
        if (e->durable) {
            i++;
        } else if (!ok) {
            entry t = take(p, i);
            p->fns.failed(p->arg, t.item);
        } else if (!e->fresh && cb_adapter_refusal(p->a, e->seq, why, sizeof why)) {
            entry t = take(p, i);
            p->fns.refused(p->arg, t.item, why);
        } else if (!e->fresh || !wait) {
            entry t = take(p, i);
            p->fns.accepted(p->arg, t.item, NULL);
        } else {
            e->durable = true;
            e->deadline_ms = deadline;
            i++;
        }
    }
}

void cb_pending_answered(cb_pending *p, const cb_adapter_answer *ans)
{
    char why[320];
    if (!ans->accepted)
        snprintf(why, sizeof why, "%s: %s", ans->code, ans->reason);
    for (size_t i = 0; i < p->n;) {
        if (!p->e[i].durable || p->e[i].seq != ans->seq) {
            i++;
            continue;
        }
        entry t = take(p, i);
        if (ans->accepted)
            p->fns.accepted(p->arg, t.item, ans);
        else
            p->fns.refused(p->arg, t.item, why);
    }
}

void cb_pending_expire(cb_pending *p)
{
    int64_t now = cb_client_now_ms();
    for (size_t i = 0; i < p->n;) {
        if (p->e[i].durable && now >= p->e[i].deadline_ms) {
            entry t = take(p, i); /* durable all the same: the flags are in the broker for anyone to see */
            p->fns.accepted(p->arg, t.item, NULL);
        } else {
            i++;
        }
    }
}

int cb_pending_due_ms(const cb_pending *p)
{
    int64_t now = cb_client_now_ms(), due = INT64_MAX;
    for (size_t i = 0; i < p->n; i++)
        if (p->e[i].durable && p->e[i].deadline_ms < due)
            due = p->e[i].deadline_ms;
    return due == INT64_MAX ? 1000 : due <= now ? 0 : (int)(due - now);
}

void cb_pending_drop(cb_pending *p, void *item)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (p->e[i].item == item) {
            take(p, i);
            return;
        }
}
