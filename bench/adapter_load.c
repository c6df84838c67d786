#define _GNU_SOURCE /* memmem, strcasestr */
/* cb-bench-adapter: load for an adapter, as agency systems make it.
 *
 *   --mllp HOST:PORT  HL7 v2 ADT^A03 messages, each a new visit, over MLLP
 *   --http HOST:PORT  FHIR ServiceRequests POSTed to /fhir/ServiceRequest (keep-alive)
 *   --conns N         connections (default 16)
 *   --count N         messages in all (default 100000)
 *   --depth N         sent ahead of their answers on each connection (default 1: each
 *                     sender waits for its answer, as HL7's original mode does)
 *   --pid PID         the adapter's pid: its RssAnon is sampled as the run goes
 *   --tag T           makes ids unique across runs on one store
 *
 * Prints one JSON line: messages answered, how many were accepted (AA, 201/200),
 * the rate, the latency from send to answer (p50, p99, max) and, with --pid,
 * RssAnon at each tenth of the run. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "program.h"

#define MAX_CONNS 256
#define MAX_DEPTH 64

typedef struct {
    int fd;
    char in[65536];
    size_t in_len;
    int64_t sent_us[MAX_DEPTH]; /* a ring of send times, oldest first */
    unsigned head, outstanding;
} conn;

static bool http;
static const char *tag = "b";
static long next_no;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static size_t make_message(char *out, size_t cap)
{
    long n = next_no++;
    if (!http)
        return (size_t)snprintf(
            out, cap,
            "\x0bMSH|^~\\&|PAS|RXH|CB|COUNCIL|20261202101112||ADT^A03^ADT_A03|%s%ld|P|2.4\r"
            "EVN|A03|20261203140000\rPID|1||M%ld^^^RXH^MR~9434765919^^^NHS^NH||TEST^ANNE||19400101|F\r"
            "PV1|1|I|WARD7^^^RXH||||C1^Doctor^A||||||||||||%s-V%ld||||||||||||||||||HOME|||||||20261130090000|"
            "20261203135500\r\x1c\r",
            tag, n, n, tag, n);
    char body[1024];
    int blen = snprintf(body, sizeof body,
                        "{\"resourceType\":\"ServiceRequest\",\"identifier\":[{\"value\":\"%s-%ld\"}],"
                        "\"status\":\"active\",\"intent\":\"order\",\"priority\":\"urgent\","
                        "\"code\":{\"text\":\"housing assessment\"},\"reasonCode\":[{\"text\":\"rent arrears\"}],"
                        "\"subject\":{\"identifier\":{\"system\":\"https://fhir.nhs.uk/Id/nhs-number\","
                        "\"value\":\"9434765919\"}},\"performer\":[{\"identifier\":{\"value\":\"housing\"}}],"
                        "\"authoredOn\":\"2026-12-02T10:11:12Z\"}",
                        tag, n);
    return (size_t)snprintf(
        out, cap,
        "POST /fhir/ServiceRequest HTTP/1.1\r\nHost: bench\r\nContent-Type: application/fhir+json\r\n"
        "Content-Length: %d\r\n\r\n%s",
        blen, body);
}

/* One whole answer at the front of c->in: its length, and whether it accepted. */
static size_t answer_len(conn *c, bool *ok)
{
    if (!http) {
        char *end = memmem(c->in, c->in_len, "\x1c\r", 2);
        if (!end)
            return 0;
        *ok = memmem(c->in, (size_t)(end - c->in), "MSA|AA", 6) != NULL;
        return (size_t)(end - c->in) + 2;
    }
    char *head_end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!head_end)
        return 0;
    *head_end = 0;
    char *cl = strcasestr(c->in, "Content-Length:");
    long body = cl ? strtol(cl + 15, NULL, 10) : 0;
    *head_end = '\r';
    size_t total = (size_t)(head_end - c->in) + 4 + (size_t)body;
    if (c->in_len < total)
        return 0;
    *ok = !strncmp(c->in, "HTTP/1.1 201", 12) || !strncmp(c->in, "HTTP/1.1 200", 12);
    return total;
}

static long rss_anon_kb(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "RssAnon:", 8))
            kb = strtol(line + 8, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *target = NULL;
    long conns = 16, count = 100000, depth = 1, pid = 0;
    static const struct option opts[] = {{"mllp", required_argument, 0, 'm'},  {"http", required_argument, 0, 'h'},
                                         {"conns", required_argument, 0, 'c'}, {"count", required_argument, 0, 'n'},
                                         {"depth", required_argument, 0, 'd'}, {"pid", required_argument, 0, 'p'},
                                         {"tag", required_argument, 0, 't'},   {"help", no_argument, 0, 'H'},
                                         {"version", no_argument, 0, 'V'},     {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm': target = optarg; break;
        case 'h': target = optarg, http = true; break;
        case 'c': conns = strtol(optarg, NULL, 10); break;
        case 'n': count = strtol(optarg, NULL, 10); break;
        case 'd': depth = strtol(optarg, NULL, 10); break;
        case 'p': pid = strtol(optarg, NULL, 10); break;
        case 't': tag = optarg; break;
        case 'H':
            printf("Usage: cb-bench-adapter --mllp|--http HOST:PORT [--conns N] [--count N] [--depth N] [--pid PID]"
                   " [--tag T]\n(see the comment at the top of bench/adapter_load.c)\n");
            return 0;
        case 'V': printf("cb-bench-adapter %s\n", CB_VERSION); return 0;
        default: fprintf(stderr, "usage: cb-bench-adapter --mllp|--http HOST:PORT [--conns N] [--count N]\n"); return 2;
        }
    }
    if (!target || conns < 1 || conns > MAX_CONNS || count < 1 || depth < 1 || depth > MAX_DEPTH) {
        fprintf(stderr, "cb-bench-adapter: --mllp or --http HOST:PORT, --conns 1..%d, --depth 1..%d\n", MAX_CONNS,
                MAX_DEPTH);
        return 2;
    }
    conn *cs = calloc((size_t)conns, sizeof *cs);
    int64_t *lat = malloc((size_t)count * sizeof *lat);
    struct pollfd *fds = calloc((size_t)conns, sizeof *fds);
    if (!cs || !lat || !fds)
        return 2;
    for (long i = 0; i < conns; i++)
        if ((cs[i].fd = cb_dial(target, 0)) < 0) {
            fprintf(stderr, "cb-bench-adapter: cannot connect to %s: %s\n", target, strerror(errno));
            return 2;
        }
    long sent = 0, answered = 0, accepted = 0, rss[11];
    int n_rss = 0;
    if (pid)
        rss[n_rss++] = rss_anon_kb(pid);
    int64_t t0 = now_us(), deadline = t0 + 600 * 1000000LL;
    char msg[4096];
    while (answered < count && now_us() < deadline) {
        for (long i = 0; i < conns; i++) {
            conn *c = &cs[i];
            while (c->outstanding < depth && sent < count) {
                size_t len = make_message(msg, sizeof msg);
                if (write(c->fd, msg, len) != (ssize_t)len) { /* small and blocking: all or an error */
                    fprintf(stderr, "cb-bench-adapter: write: %s\n", strerror(errno));
                    return 1;
                }
                c->sent_us[(c->head + c->outstanding++) % MAX_DEPTH] = now_us();
                sent++;
            }
            fds[i] = (struct pollfd){.fd = c->fd, .events = POLLIN};
        }
        if (poll(fds, (nfds_t)conns, 1000) < 0 && errno != EINTR)
            return 1;
        for (long i = 0; i < conns; i++) {
            conn *c = &cs[i];
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t got = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len - 1);
            if (got <= 0) {
                fprintf(stderr, "cb-bench-adapter: the adapter closed connection %ld\n", i);
                return 1;
            }
            c->in_len += (size_t)got;
            bool ok;
            size_t len;
            while ((len = answer_len(c, &ok)) > 0) {
                lat[answered++] = now_us() - c->sent_us[c->head];
                c->head = (c->head + 1) % MAX_DEPTH;
                c->outstanding--;
                accepted += ok;
                memmove(c->in, c->in + len, c->in_len - len);
                c->in_len -= len;
                if (pid && n_rss < 11 && answered >= count / 10 * n_rss)
                    rss[n_rss++] = rss_anon_kb(pid);
            }
        }
    }
    double secs = (double)(now_us() - t0) / 1e6;
    qsort(lat, (size_t)answered, sizeof *lat, cmp64);
    printf("{\"messages\":%ld,\"accepted\":%ld,\"seconds\":%.3f,\"per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"max_ms\":%.3f,\"conns\":%ld,\"depth\":%ld,\"rss_anon_kb\":[",
           answered, accepted, secs, (double)answered / secs, answered ? (double)lat[answered / 2] / 1000 : 0,
           answered ? (double)lat[(long)(answered * 0.99)] / 1000 : 0, answered ? (double)lat[answered - 1] / 1000 : 0,
           conns, depth);
    for (int i = 0; i < n_rss; i++)
        printf("%s%ld", i ? "," : "", rss[i]);
    printf("]}\n");
    for (long i = 0; i < conns; i++)
        close(cs[i].fd);
    free(cs);
    free(lat);
    free(fds);
    return answered == count ? 0 : 1;
}
