#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixtures.h"

#include "audit.h"
#include "flagbook.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cb_test_mkdtemp(char *out, size_t cap)
{
    return snprintf(out, cap, "/tmp/carebridge-unit-XXXXXX") < (int)cap && mkdtemp(out) != NULL;
}

int cb_test_remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            char sub[256];
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) < (int)sizeof sub)
                cb_test_remove_tree(sub);
        }
        closedir(d);
    }
    return remove(path);
}

bool cb_test_store_open(cb_test_store *t, uint64_t map_bytes, double publish_fraction)
{
    memset(t, 0, sizeof *t);
    if (!cb_test_mkdtemp(t->root, sizeof t->root)) {
        print_error("cannot make a temporary directory\n");
        t->root[0] = '\0';
        return false;
    }
    snprintf(t->dir, sizeof t->dir, "%s/db", t->root);
    cb_error err = {0};
    /* As the broker opens it: with the flags' keyspaces. */
    t->store = cb_store_open_with(t->dir, map_bytes, publish_fraction, cb_broker_keyspaces, CB_BROKER_KEYSPACES, &err);
    if (t->store)
        return true;
    print_error("open store: %s\n", err.reason);
    cb_test_store_close(t);
    return false;
}

int cb_test_store_close(cb_test_store *t)
{
    cb_store_destroy(&t->store);
    int rc = t->root[0] ? cb_test_remove_tree(t->root) : 0;
    t->root[0] = '\0';
    return rc;
}

cb_txn *cb_test_begin(cb_store *store, bool write)
{
    cb_error err = {0};
    cb_txn *txn = cb_txn_begin(store, write, &err);
    if (!txn)
        fail_msg("begin a %s transaction: %s", write ? "write" : "read", err.reason);
    return txn;
}

cb_config *cb_test_config(void)
{
    char msg[256] = "";
    cb_config *cfg = cb_config_load(NULL, msg, sizeof msg);
    if (!cfg)
        print_error("the embedded configuration: %s\n", msg);
    return cfg;
}

void cb_test_referral(cb_test_event *e, const char *id, const char *reason)
{
    memset(e, 0, sizeof *e);
    carebridge__v1__frame__init(&e->frame);
    carebridge__v1__publish__init(&e->publish);
    carebridge__v1__envelope__init(&e->ev);
    carebridge__v1__person__init(&e->person);
    carebridge__v1__referral__init(&e->referral);
    snprintf(e->id, sizeof e->id, "%s", id);
    snprintf(e->reason, sizeof e->reason, "%s", reason);
    e->person.nhs_number = CB_TEST_NHS;
    e->referral.reason = e->reason;
    e->to[0] = "social-care";
    e->ev.event_id = e->id;
    e->ev.person = &e->person;
    e->ev.from_agency = "health";
    e->ev.to_agencies = e->to;
    e->ev.n_to_agencies = 1;
    e->ev.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL;
    e->ev.referral = &e->referral;
    e->publish.event = &e->ev;
    e->frame.kind_case = CAREBRIDGE__V1__FRAME__KIND_PUBLISH;
    e->frame.publish = &e->publish;
}

void cb_test_response(cb_test_event *e, const char *id, const char *answers, Carebridge__V1__Response__Status status)
{
    cb_test_referral(e, id, "");
    carebridge__v1__response__init(&e->response);
    snprintf(e->answers, sizeof e->answers, "%s", answers);
    e->response.status = status;
    e->ev.correlation_id = e->answers;
    e->ev.from_agency = "social-care";
    e->to[0] = "health";
    e->ev.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE;
    e->ev.response = &e->response;
}
