/* Temporary directories for tests that need a real filesystem (LMDB). */
#ifndef CB_TEST_TEMPDIR_H
#define CB_TEST_TEMPDIR_H

#include <stddef.h>

/* Create a fresh directory under /tmp into out (at least 32 bytes); false on failure. */
int cb_test_mkdtemp(char *out, size_t cap);
/* Remove path and, if it is a directory, everything under it. 0 on success. */
int cb_test_remove_tree(const char *path);

#endif
