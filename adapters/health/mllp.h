/* MLLP, HL7's framing over TCP: a message is sent as <VT> message <FS><CR>
 * (0x0B ... 0x1C 0x0D). A connection's bytes are fed in as they arrive and
 * come out as whole messages. As senders really behave: bytes between
 * frames (a stray CR LF, a keep-alive) are skipped, and a frame whose FS is
 * not followed by CR ends at the FS all the same. A frame over the size
 * limit is read to its end and dropped, its first bytes kept so the answer
 * can still name the message it refuses. */
#ifndef CB_MLLP_H
#define CB_MLLP_H

#include <stddef.h>
#include <stdint.h>

#define CB_MLLP_START 0x0B
#define CB_MLLP_END   0x1C
#define CB_MLLP_CR    0x0D
#define CB_MLLP_HEAD  1024 /* bytes of a refused frame kept for its answer */

typedef struct cb_mllp cb_mllp;

cb_mllp *cb_mllp_new(size_t max_message);
void cb_mllp_free(cb_mllp **m_p);

typedef enum {
    CB_MLLP_MORE,    /* all of the input was taken; no frame ended */
    CB_MLLP_MESSAGE, /* a frame ended: *msg is the message */
    CB_MLLP_TOO_BIG, /* a frame over the limit ended: *msg is its first CB_MLLP_HEAD bytes at most */
    CB_MLLP_NOMEM,
} cb_mllp_status;

/* Take bytes of in up to the end of the next frame; *used says how many
 * (feed the rest again). *msg stays valid until the next call. */
cb_mllp_status cb_mllp_feed(cb_mllp *m, const uint8_t *in, size_t len, size_t *used, const uint8_t **msg,
                            size_t *msg_len);

/* True while part of a frame has been read (a connection closing now cut a message short). */
int cb_mllp_in_frame(const cb_mllp *m);

/* msg framed for sending: len + 3 bytes into out; 0 when out is too small. */
size_t cb_mllp_wrap(const void *msg, size_t len, uint8_t *out, size_t cap);

#endif
