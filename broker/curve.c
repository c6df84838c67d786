#include "curve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

bool cb_keypair_new(cb_keypair *k)
{
    return zmq_curve_keypair(k->public_z85, k->secret_z85) == 0;
}

bool cb_z85_key(const char *text, uint8_t raw[32])
{
    uint8_t scratch[32];
    if (!text || strlen(text) != CB_Z85_KEY_LEN)
        return false;
    return zmq_z85_decode(raw ? raw : scratch, text) != NULL;
}

static bool write_file(const char *path, const char *text, mode_t mode, char *why, size_t cap)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(why, cap, "cannot create %s: %s", path, strerror(errno));
        return false;
    }
    size_t len = strlen(text);
    bool ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    if (close(fd) < 0)
        ok = false;
    if (!ok) {
        snprintf(why, cap, "cannot write %s: %s", path, strerror(errno));
        unlink(path);
    }
    return ok;
}

bool cb_keypair_write(const char *dir, const char *name, const cb_keypair *k, char *why, size_t cap)
{
    char key_path[PATH_MAX], pub_path[PATH_MAX], text[256];
    if (snprintf(key_path, sizeof key_path, "%s/%s.key", dir, name) >= (int)sizeof key_path ||
        snprintf(pub_path, sizeof pub_path, "%s/%s.pub", dir, name) >= (int)sizeof pub_path) {
        snprintf(why, cap, "the path %s/%s.key is too long", dir, name);
        return false;
    }
    snprintf(text, sizeof text,
             "# carebridge CURVE secret key of %s: keep it private (mode 0600); its public key is in %s.pub\n%s\n",
             name, name, k->secret_z85);
    /* The secret first: a public key without its secret is no use to anyone. */
    if (!write_file(key_path, text, 0600, why, cap))
        return false;
    snprintf(text, sizeof text, "%s\n", k->public_z85);
    if (!write_file(pub_path, text, 0644, why, cap)) {
        unlink(key_path);
        return false;
    }
    return true;
}

/* The first line of a file that is not blank or a '#' comment, trimmed. (A
 * Z85 key never begins with '#': a 5-digit group's first digit is at most
 * the 83rd of the alphabet.) */
static bool first_line(FILE *f, char *out, size_t cap)
{
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *s = line + strspn(line, " \t");
        s[strcspn(s, "\r\n")] = 0;
        size_t len = strlen(s);
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            s[--len] = 0;
        if (!*s || *s == '#')
            continue;
        snprintf(out, cap, "%s", s);
        return true;
    }
    return false;
}

bool cb_keypair_read(const char *path, cb_keypair *k, char *why, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(why, cap, "cannot read the key file %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(why, cap, "the key file %s is open to others (mode %03o): chmod 600 it", path,
                 (unsigned)(st.st_mode & 0777));
        close(fd);
        return false;
    }
    FILE *f = fdopen(fd, "r");
    char line[512] = "";
    bool got = f && first_line(f, line, sizeof line);
    if (f)
        fclose(f);
    else
        close(fd);
    memset(k, 0, sizeof *k);
    if (!got || !cb_z85_key(line, NULL) || zmq_curve_public(k->public_z85, line) != 0) {
        snprintf(why, cap,
                 "the key file %s holds no CURVE secret key (40 Z85 characters; `carebridge keys new` writes one)",
                 path);
        sodium_memzero(line, sizeof line);
        return false;
    }
    memcpy(k->secret_z85, line, CB_Z85_KEY_LEN + 1);
    sodium_memzero(line, sizeof line);
    return true;
}

bool cb_public_key_arg(const char *key_or_file, char out[CB_Z85_KEY_LEN + 1], char *why, size_t cap)
{
    if (cb_z85_key(key_or_file, NULL)) {
        memcpy(out, key_or_file, CB_Z85_KEY_LEN + 1);
        return true;
    }
    FILE *f = fopen(key_or_file, "r");
    if (!f) {
        snprintf(why, cap, "the broker key '%s' is neither a Z85 public key (40 characters) nor a file: %s",
                 key_or_file, strerror(errno));
        return false;
    }
    char line[512] = "";
    bool got = first_line(f, line, sizeof line);
    fclose(f);
    if (!got || !cb_z85_key(line, NULL)) {
        snprintf(why, cap, "the file %s holds no Z85 public key (one line of 40 characters)", key_or_file);
        return false;
    }
    memcpy(out, line, CB_Z85_KEY_LEN + 1);
    return true;
}

bool cb_curve_client(void *sock, const char *key_file, const char *broker_key, char *why, size_t cap)
{
    if (!key_file && !broker_key)
        return true;
    if (!key_file || !broker_key) {
        snprintf(why, cap,
                 "a CURVE connection needs both its own secret key (--key, CAREBRIDGE_KEY) and the "
                 "broker's public key (--broker-key, CAREBRIDGE_BROKER_KEY)");
        return false;
    }
    cb_keypair k;
    char server[CB_Z85_KEY_LEN + 1];
    if (!cb_keypair_read(key_file, &k, why, cap) || !cb_public_key_arg(broker_key, server, why, cap))
        return false;
    bool ok = zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server, CB_Z85_KEY_LEN) == 0 &&
              zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, k.public_z85, CB_Z85_KEY_LEN) == 0 &&
              zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k.secret_z85, CB_Z85_KEY_LEN) == 0;
    sodium_memzero(&k, sizeof k);
    if (!ok)
        snprintf(why, cap, "cannot use CURVE on this connection: %s", zmq_strerror(errno));
    return ok;
}

void cb_key_fingerprint(const uint8_t raw[32], char out[CB_FINGERPRINT_LEN + 1])
{
    uint8_t h[crypto_generichash_BYTES_MIN]; /* 16: the shortest BLAKE2b gives; 8 of them are shown */
    crypto_generichash(h, sizeof h, raw, 32, NULL, 0);
    sodium_bin2hex(out, CB_FINGERPRINT_LEN + 1, h, CB_FINGERPRINT_LEN / 2);
}
