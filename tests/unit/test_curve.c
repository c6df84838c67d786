/* CURVE key files (curve.c) and the keyring the ZAP handlers read
 * (keyring.c): what is written is read back, a secret open to others is
 * refused, and a reload tells a revocation from an addition. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "curve.h"
#include "keyring.h"

static char dir[] = "/tmp/cb_curve_XXXXXX";

#define KEY_A "rq:Ggz9:g4!Chp5v0#[X]xcR7!*]+Hr?D+TOz&ze"
#define KEY_B "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
#define KEY_C "XcVPa2@[uC7H&={=szMehT$.0&7nVxYXa#qr5G8c"

static void written_pair_reads_back(void **state)
{
    (void)state;
    cb_keypair k, back;
    char why[512] = "", path[600];
    assert_true(cb_keypair_new(&k));
    assert_true(cb_keypair_write(dir, "health", &k, why, sizeof why));
    snprintf(path, sizeof path, "%s/health.key", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(cb_keypair_read(path, &back, why, sizeof why));
    assert_string_equal(back.secret_z85, k.secret_z85);
    assert_string_equal(back.public_z85, k.public_z85); /* derived from the secret */
    char pub[CB_Z85_KEY_LEN + 1];
    snprintf(path, sizeof path, "%s/health.pub", dir);
    assert_true(cb_public_key_arg(path, pub, why, sizeof why));
    assert_string_equal(pub, k.public_z85);
    assert_true(cb_public_key_arg(k.public_z85, pub, why, sizeof why));
    /* Never over an existing pair. */
    assert_false(cb_keypair_write(dir, "health", &k, why, sizeof why));
    assert_non_null(strstr(why, "health.key"));
}

static void secret_open_to_others_is_refused(void **state)
{
    (void)state;
    cb_keypair k;
    char why[512] = "", path[600];
    assert_true(cb_keypair_new(&k));
    assert_true(cb_keypair_write(dir, "open", &k, why, sizeof why));
    snprintf(path, sizeof path, "%s/open.key", dir);
    assert_int_equal(chmod(path, 0640), 0);
    assert_false(cb_keypair_read(path, &k, why, sizeof why));
    assert_non_null(strstr(why, path));
    assert_non_null(strstr(why, "open to others (mode 640)"));
}

/* Comments and blank lines before the key are skipped. */
static void comments_before_the_key_are_skipped(void **state)
{
    (void)state;
    char path[600], why[512] = "", pub[CB_Z85_KEY_LEN + 1];
    snprintf(path, sizeof path, "%s/hash.pub", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# a comment\n\n  " KEY_C "  \n", f);
    fclose(f);
    assert_true(cb_public_key_arg(path, pub, why, sizeof why));
    assert_string_equal(pub, KEY_C);
    assert_false(cb_public_key_arg("not-a-key-and-no-file", pub, why, sizeof why));
    assert_non_null(strstr(why, "neither a Z85 public key"));
}

static cb_config *config_with(const char *health_keys, const char *person)
{
    char yaml[1024], path[600], err[512];
    snprintf(
        yaml, sizeof yaml,
        "broker: {key_file: b.key}\n"
        "agencies:\n  - {id: health, kind: HEALTH, name: H, keys: [%s]}\n  - {id: housing, kind: HOUSING, name: Ho}\n"
        "people:\n%s",
        health_keys, person);
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    FILE *f = fopen(path, "w");
    fputs(yaml, f);
    fclose(f);
    cb_config *cfg = cb_config_load(path, err, sizeof err);
    if (!cfg)
        fail_msg("%s", err);
    return cfg;
}

static void keyring_names_principals_and_tells_revocations(void **state)
{
    (void)state;
    cb_config *cfg =
        config_with("\"" KEY_A "\"", "  - {name: ann, role: coordinator, agencies: [housing], key: \"" KEY_B "\"}\n");
    cb_keyring *ring = cb_keyring_new(cfg, cfg);
    assert_int_equal(cb_keyring_size(ring), 2);
    uint8_t raw[32];
    cb_principal who;
    assert_true(cb_z85_key(KEY_A, raw));
    assert_true(cb_keyring_find(ring, raw, &who));
    assert_string_equal(who.name, "health");
    assert_int_equal(who.role, CB_ROLE_AGENCY);
    assert_int_equal(who.agency, 0);
    assert_true(cb_principal_sees(&who, 0));
    assert_false(cb_principal_sees(&who, 1));
    assert_true(cb_z85_key(KEY_B, raw));
    assert_true(cb_keyring_find(ring, raw, &who));
    assert_string_equal(who.name, "ann");
    assert_int_equal(who.role, CB_ROLE_COORDINATOR);
    assert_false(cb_principal_sees(&who, 0));
    assert_true(cb_principal_sees(&who, 1));
    cb_principal named;
    assert_true(cb_keyring_find_named(ring, "ann", who.fingerprint, &named));
    assert_false(cb_keyring_find_named(ring, "health", who.fingerprint, &named));
    assert_true(cb_z85_key(KEY_C, raw));
    assert_false(cb_keyring_find(ring, raw, &who));

    /* A key added: nothing revoked. */
    cb_config *more = config_with("\"" KEY_A "\", \"" KEY_C "\"",
                                  "  - {name: ann, role: coordinator, agencies: [housing], key: \"" KEY_B "\"}\n");
    cb_keyring *next = cb_keyring_new(cfg, more);
    assert_false(cb_keyring_replace(ring, &next));
    assert_null(next);
    assert_true(cb_keyring_find(ring, raw, &who));
    assert_string_equal(who.name, "health");
    /* The coordinator's agencies changed: her key now means something else. */
    cb_config *moved = config_with("\"" KEY_A "\", \"" KEY_C "\"",
                                   "  - {name: ann, role: coordinator, agencies: [health], key: \"" KEY_B "\"}\n");
    next = cb_keyring_new(cfg, moved);
    assert_true(cb_keyring_replace(ring, &next));
    /* A key removed. */
    next = cb_keyring_new(cfg, cfg);
    assert_true(cb_keyring_replace(ring, &next));
    assert_false(cb_keyring_find(ring, raw, &who));
    cb_keyring_free(&ring);
    cb_config_free(&cfg);
    cb_config_free(&more);
    cb_config_free(&moved);
}

static void fingerprint_is_stable_and_short(void **state)
{
    (void)state;
    uint8_t raw[32];
    char a[CB_FINGERPRINT_LEN + 1], b[CB_FINGERPRINT_LEN + 1];
    assert_true(cb_z85_key(KEY_A, raw));
    cb_key_fingerprint(raw, a);
    cb_key_fingerprint(raw, b);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), CB_FINGERPRINT_LEN);
    assert_null(strstr(KEY_A, a));
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(written_pair_reads_back),
        cmocka_unit_test(secret_open_to_others_is_refused),
        cmocka_unit_test(comments_before_the_key_are_skipped),
        cmocka_unit_test(keyring_names_principals_and_tells_revocations),
        cmocka_unit_test(fingerprint_is_stable_and_short),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return failed;
}
