/* carebridge demo: Margaret's discharge (domain.md) played through the real
 * adapters `make run` starts, each in its agency's own format, then her
 * journey as the broker tells it. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "program.h"

static const char usage[] =
    "Usage: carebridge demo [--health HOST:PORT] [--social HOST:PORT] [--inbox DIR] [--broker ENDPOINT]\n"
    "\n"
    "Plays Margaret's discharge through the running adapters (start them with\n"
    "`make run`), each step in the sending agency's own format:\n"
    "  1. the hospital's PAS discharges her: an HL7 ADT^A03 over MLLP to carebridge-health\n"
    "     (default 127.0.0.1:2575), to social care and housing;\n"
    "  2. social care refers her to housing for her bed to be moved downstairs: a FHIR\n"
    "     ServiceRequest to carebridge-social (default 127.0.0.1:8090);\n"
    "  3. social care accepts the discharge: a FHIR Task;\n"
    "  4. housing accepts the referral: a CSV row dropped into carebridge-housing's inbox\n"
    "     (default ./var/housing/inbox);\n"
    "then prints her journey, with its flags. Each step prints the answer it got. Running\n"
    "it again sends the same messages: each is known, and stored once.\n"
    "Exit 0 when every step was accepted, 1 when one was not, 2 when an adapter or the\n"
    "broker cannot be reached.\n";

#define NHS "9434765919"

/* Send bytes, read the answer until end (HTTP, Connection: close) or until stop appears (MLLP). */
static size_t exchange(int fd, const char *out, size_t len, const char *stop, char *in, size_t cap)
{
    size_t n = 0;
    if (write(fd, out, len) != (ssize_t)len)
        return 0;
    while (n + 1 < cap) {
        ssize_t got = read(fd, in + n, cap - n - 1);
        if (got <= 0)
            break;
        n += (size_t)got;
        in[n] = 0;
        if (stop && strstr(in, stop))
            break;
    }
    in[n] = 0;
    return n;
}

static bool step_hl7(const char *health)
{
    static const char a03[] =
        "\x0bMSH|^~\\&|PAS|GENHOSP|CAREBRIDGE|COUNCIL|20261124160000||ADT^A03^ADT_A03|DEMO-A03-1|P|2.5.1\r"
        "EVN|A03|20261124160000\r"
        "PID|1||W7-2211^^^GENHOSP^MR~" NHS "^^^NHS^NH||EXAMPLE^MARGARET||19650314|F\r"
        "PV1|1|I|WARD7^^^GENHOSP||||C123^Consultant^A||||||||||||W7-2211||||||||||||||||||own home|||||||"
        "20261118090000|20261125110000\r"
        "PV2|||^hip replacement\r\x1c\r";
    int fd = cb_dial(health, 10);
    if (fd < 0) {
        fprintf(stderr, "carebridge demo: cannot reach carebridge-health at %s (is `make run` running?)\n", health);
        return false;
    }
    char in[8192];
    exchange(fd, a03, sizeof a03 - 1, "\x1c", in, sizeof in);
    close(fd);
    for (char *p = in; *p; p++)
        if (*p == '\r')
            *p = '\n';
    char *msa = strstr(in, "MSA|");
    printf("1. ADT^A03 over MLLP to carebridge-health: %.*s\n", msa ? (int)strcspn(msa, "\n\x1c") : 4,
           msa ? msa : "none");
    for (char *err = msa ? strstr(msa, "\nERR|") : NULL; err; err = strstr(err, "\nERR|")) {
        err++;
        printf("     %.*s\n", (int)strcspn(err, "\n\x1c"), err);
    }
    return msa && !strncmp(msa, "MSA|AA", 6);
}

static bool step_fhir(const char *social, const char *label, const char *type, const char *body)
{
    char out[4096], in[16384];
    int len = snprintf(out, sizeof out,
                       "POST /fhir/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/fhir+json\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       type, social, strlen(body), body);
    int fd = cb_dial(social, 10);
    if (fd < 0) {
        fprintf(stderr, "carebridge demo: cannot reach carebridge-social at %s (is `make run` running?)\n", social);
        return false;
    }
    exchange(fd, out, (size_t)len, NULL, in, sizeof in);
    close(fd);
    int status = 0;
    sscanf(in, "HTTP/1.1 %d", &status);
    printf("%s: HTTP %d\n", label, status);
    for (char *p = strstr(in, "\"diagnostics\":\""); p; p = strstr(p + 1, "\"diagnostics\":\""))
        printf("     %.*s\n", (int)strcspn(p + 15, "\""), p + 15);
    return status == 201 || status == 200;
}

static bool step_csv(const char *inbox)
{
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/.demo-housing.csv", inbox);
    snprintf(path, sizeof path, "%s/demo-housing.csv", inbox);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "carebridge demo: cannot write into %s: %s (is `make run` running here?)\n", inbox,
                strerror(errno));
        return false;
    }
    fputs("eventId,correlationId,toAgencies,person.nhsNumber,occurredAt,response.status,response.note\n"
          "demo-hms-accept-1,demo-sc-bed-1,social-care," NHS ",2026-11-24T17:30:00Z,ACCEPTED,"
          "\"occupational therapy will move the bed on 25 Nov, before she is home\"\n",
          f);
    bool ok = fclose(f) == 0 && rename(tmp, path) == 0;
    printf("4. a housing CSV row into %s: %s\n", inbox, ok ? "dropped (read once it is moved in)" : strerror(errno));
    return ok;
}

int cli_demo(const cli_globals *g, int argc, char **argv)
{
    static const struct option opts[] = {{"health", required_argument, 0, 'H'}, {"social", required_argument, 0, 'S'},
                                         {"inbox", required_argument, 0, 'i'},  {"broker", required_argument, 0, 'b'},
                                         {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *health = "127.0.0.1:2575", *social = "127.0.0.1:8090", *inbox = "./var/housing/inbox";
    cli_globals mine = *g;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'H': health = optarg; break;
        case 'S': social = optarg; break;
        case 'i': inbox = optarg; break;
        case 'b': mine.broker = optarg; break;
        case 'h': fputs(usage, stdout); return CLI_OK;
        default: fputs(usage, stderr); return CLI_USAGE;
        }
    }
    printf("Margaret, 61, is going home from ward 7 after a hip replacement (domain.md).\n");
    bool ok = step_hl7(health);
    if (!ok && errno == ECONNREFUSED)
        return CLI_USAGE;
    ok &= step_fhir(social, "2. a FHIR ServiceRequest from social care to housing (her bed moved downstairs)",
                    "ServiceRequest",
                    "{\"resourceType\":\"ServiceRequest\",\"identifier\":[{\"value\":\"demo-sc-bed-1\"}],"
                    "\"status\":\"active\",\"intent\":\"order\",\"priority\":\"urgent\","
                    "\"code\":{\"text\":\"bed moved downstairs before discharge\"},"
                    "\"reasonCode\":[{\"text\":\"cannot manage the stairs for two weeks after her hip replacement\"}],"
                    "\"subject\":{\"identifier\":{\"system\":\"https://fhir.nhs.uk/Id/nhs-number\",\"value\":\"" NHS
                    "\"}},\"performer\":[{\"identifier\":{\"value\":\"housing\"}}],"
                    "\"requester\":{\"display\":\"adult social care duty team\"},"
                    "\"authoredOn\":\"2026-11-24T16:30:00Z\"}");
    ok &= step_fhir(social, "3. a FHIR Task: social care accepts the discharge", "Task",
                    "{\"resourceType\":\"Task\",\"identifier\":[{\"value\":\"demo-sc-accept-1\"}],"
                    "\"status\":\"accepted\",\"intent\":\"order\","
                    "\"focus\":{\"identifier\":{\"value\":\"hl7:GENHOSP:visit:W7-2211:discharge\"}},"
                    "\"for\":{\"identifier\":{\"system\":\"https://fhir.nhs.uk/Id/nhs-number\",\"value\":\"" NHS
                    "\"}},\"requester\":{\"identifier\":{\"value\":\"health\"}},"
                    "\"note\":[{\"text\":\"reablement visits from the day she is home\"}],"
                    "\"lastModified\":\"2026-11-24T17:00:00Z\"}");
    ok &= step_csv(inbox);
    /* The housing row is read and sent on in the background: give it a moment. */
    for (int i = 0; i < 20; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/demo-housing.csv", inbox);
        if (access(path, F_OK) != 0)
            break;
        usleep(100 * 1000);
    }
    usleep(500 * 1000);
    printf("\nHer journey, as carebridge has it:\n");
    char *jargv[] = {"journey", NHS, NULL};
    optind = 1;
    int rc = cli_journey(&mine, 2, jargv);
    return rc != CLI_OK ? rc : ok ? CLI_OK : CLI_FAILED;
}
