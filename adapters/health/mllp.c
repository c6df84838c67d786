#include "mllp.h"

#include <stdlib.h>
#include <string.h>

typedef enum { BETWEEN, IN_FRAME, AFTER_END } state;

struct cb_mllp {
    size_t max;
    uint8_t *buf;
    size_t n, cap;
    state st;
    int over; /* the frame passed max: only its head is kept */
};

cb_mllp *cb_mllp_new(size_t max_message)
{
    cb_mllp *m = calloc(1, sizeof *m);
    if (m)
        m->max = max_message ? max_message : 1;
    return m;
}

void cb_mllp_free(cb_mllp **m_p)
{
    if (*m_p)
        free((*m_p)->buf);
    free(*m_p);
    *m_p = NULL;
}

int cb_mllp_in_frame(const cb_mllp *m)
{
    return m->st == IN_FRAME;
}

/* A frame's bytes, all of them up to the limit; past it only its head. */
static int keep(cb_mllp *m, const uint8_t *p, size_t n)
{
    if (!m->over && m->n + n > m->max) {
        m->over = 1;
        if (m->n > CB_MLLP_HEAD)
            m->n = CB_MLLP_HEAD;
    }
    if (m->over) {
        size_t room = m->n < CB_MLLP_HEAD ? CB_MLLP_HEAD - m->n : 0;
        n = n < room ? n : room;
    }
    if (!n)
        return 1;
    if (m->n + n > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->n + n)
            cap *= 2;
        uint8_t *b = realloc(m->buf, cap);
        if (!b)
            return 0;
        m->buf = b, m->cap = cap;
    }
    memcpy(m->buf + m->n, p, n);
    m->n += n;
    return 1;
}

cb_mllp_status cb_mllp_feed(cb_mllp *m, const uint8_t *in, size_t len, size_t *used, const uint8_t **msg,
                            size_t *msg_len)
{
    size_t i = 0;
    if (m->st == AFTER_END) { /* the last frame ended at its FS: its CR, if any, is the frame's */
        if (len && in[0] == CB_MLLP_CR)
            i = 1;
        m->st = BETWEEN;
    }
    while (i < len) {
        if (m->st == BETWEEN) {
            const uint8_t *vt = memchr(in + i, CB_MLLP_START, len - i);
            if (!vt) {
                i = len;
                break;
            }
            i = (size_t)(vt - in) + 1;
            m->st = IN_FRAME;
            m->n = 0;
            m->over = 0;
            continue;
        }
        const uint8_t *fs = memchr(in + i, CB_MLLP_END, len - i);
        size_t upto = fs ? (size_t)(fs - in) : len;
        if (!keep(m, in + i, upto - i)) {
            *used = i;
            return CB_MLLP_NOMEM;
        }
        if (!fs) {
            i = len;
            break;
        }
        i = upto + 1;
        m->st = AFTER_END;
        if (i < len) {
            if (in[i] == CB_MLLP_CR)
                i++;
            m->st = BETWEEN;
        }
        *used = i;
        *msg = m->buf ? m->buf : (const uint8_t *)"";
        *msg_len = m->n;
        return m->over ? CB_MLLP_TOO_BIG : CB_MLLP_MESSAGE;
    }
    *used = i;
    return CB_MLLP_MORE;
}

size_t cb_mllp_wrap(const void *msg, size_t len, uint8_t *out, size_t cap)
{
    if (cap < len + 3)
        return 0;
    out[0] = CB_MLLP_START;
    memcpy(out + 1, msg, len);
    out[len + 1] = CB_MLLP_END;
    out[len + 2] = CB_MLLP_CR;
    return len + 3;
}
