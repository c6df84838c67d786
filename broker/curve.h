/* CurveZMQ key pairs as carebridge keeps them: NAME.key holds the secret
 * (mode 0600, one Z85 line after a comment), NAME.pub the public key (one
 * Z85 line). The broker, the adapters and the CLI read keys only here. */
#ifndef CB_CURVE_H
#define CB_CURVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CB_Z85_KEY_LEN     40 /* a 32-byte key in Z85 */
#define CB_FINGERPRINT_LEN 16 /* hex: the audit's "who" for a key */

typedef struct {
    char public_z85[CB_Z85_KEY_LEN + 1];
    char secret_z85[CB_Z85_KEY_LEN + 1];
} cb_keypair;

/* A fresh key pair; false when libzmq was built without CURVE. */
bool cb_keypair_new(cb_keypair *k);
/* DIR/NAME.key (created 0600, never over an existing file) and DIR/NAME.pub.
 * False with why naming the file. */
bool cb_keypair_write(const char *dir, const char *name, const cb_keypair *k, char *why, size_t cap);
/* A secret key file: refused when group or others may read it, or when it
 * holds no Z85 secret key; the public half is derived. */
bool cb_keypair_read(const char *path, cb_keypair *k, char *why, size_t cap);

/* text is 40 Z85 characters naming a key: the 32 bytes in raw when given. */
bool cb_z85_key(const char *text, uint8_t raw[32]);
/* A public key given as its Z85 text, or as a file holding it (NAME.pub). */
bool cb_public_key_arg(const char *key_or_file, char out[CB_Z85_KEY_LEN + 1], char *why, size_t cap);
/* Make sock a CURVE client of the broker whose public key is broker_key
 * (its text or a file), with the secret key in key_file. Both NULL: no
 * CURVE, and true; one without the other is refused. */
bool cb_curve_client(void *sock, const char *key_file, const char *broker_key, char *why, size_t cap);

/* A short stable name for a public key: 16 hex digits of its BLAKE2b hash. */
void cb_key_fingerprint(const uint8_t raw[32], char out[CB_FINGERPRINT_LEN + 1]);

#endif
