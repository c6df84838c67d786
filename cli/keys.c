/* carebridge keys new: a CURVE key pair for an agency, an adapter or a person. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "curve.h"

static const char usage[] = "Usage: carebridge keys new --name NAME --out DIR\n"
                            "\n"
                            "Write a CURVE key pair: DIR/NAME.key holds the secret (mode 0600; give it to\n"
                            "the one program or person it identifies, with --key or $CAREBRIDGE_KEY) and\n"
                            "DIR/NAME.pub the public key (one line). Neither file is overwritten. Prints the\n"
                            "public key as it goes in the broker's configuration: in agencies[].keys for an\n"
                            "agency or its adapters, as people[].key for a coordinator, lead or operator, or\n"
                            "in a file named by broker.key_file for the broker itself (its .key file).\n"
                            "NAME: letters, digits, '.', '_' and '-', at most 63. DIR is created (0700).\n"
                            "Exit 0 written, 1 it could not be written, 2 usage.\n";

static bool valid_name(const char *name)
{
    size_t len = strlen(name);
    return len && len <= 63 && name[0] != '.' &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

int cli_keys(const cli_globals *g, int argc, char **argv)
{
    (void)g;
    static const struct option opts[] = {{"name", required_argument, 0, 'n'},
                                         {"out", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *name = NULL, *dir = NULL;
    if (argc < 2 || strcmp(argv[1], "new")) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            fputs(usage, stdout);
            return CLI_OK;
        }
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    argc--, argv++;
    int c;
    while ((c = getopt_long(argc, argv, "n:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': name = optarg; break;
        case 'o': dir = optarg; break;
        case 'h': fputs(usage, stdout); return CLI_OK;
        default: fputs(usage, stderr); return CLI_USAGE;
        }
    }
    if (!name || !dir || optind < argc) {
        fprintf(stderr, "carebridge keys new: --name and --out are required\n\n%s", usage);
        return CLI_USAGE;
    }
    if (!valid_name(name)) {
        fprintf(stderr, "carebridge keys new: --name '%s' must be letters, digits, '.', '_' and '-' (at most 63)\n",
                name);
        return CLI_USAGE;
    }
    struct stat st;
    if (stat(dir, &st) < 0 && mkdir(dir, 0700) < 0) {
        perror("carebridge keys new: cannot create --out");
        return CLI_FAILED;
    }
    cb_keypair k;
    char why[512];
    if (!cb_keypair_new(&k)) {
        fputs("carebridge keys new: this libzmq has no CURVE support\n", stderr);
        return CLI_FAILED;
    }
    if (!cb_keypair_write(dir, name, &k, why, sizeof why)) {
        fprintf(stderr, "carebridge keys new: %s\n", why);
        return CLI_FAILED;
    }
    fprintf(stderr, "carebridge keys new: wrote %s/%s.key (secret, mode 0600) and %s/%s.pub\n", dir, name, dir, name);
    printf("\"%s\"  # %s\n", k.public_z85, name);
    return CLI_OK;
}
