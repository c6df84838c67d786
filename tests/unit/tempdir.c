#include "tempdir.h"

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
