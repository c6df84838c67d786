#include "hl7_person.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define NHS_OID "2.16.840.1.113883.2.1.4.1"

static unsigned digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : d[m - 1];
}

bool cb_hl7_time_ms(const char *ts, int64_t *ms)
{
    size_t n = 0;
    while (isdigit((unsigned char)ts[n]))
        n++;
    /* YYYY, then pairs: MM DD HH MM SS */
    if (n < 4 || n > 14 || n % 2)
        return false;
    int part[6] = {0, 1, 1, 0, 0, 0};
    digits(ts, 4, &part[0]);
    for (size_t i = 1; 4 + 2 * i <= n; i++)
        digits(ts + 2 + 2 * i, 2, &part[i]);
    if (part[1] < 1 || part[1] > 12 || part[2] < 1 || part[2] > days_in(part[0], part[1]) || part[3] > 23 ||
        part[4] > 59 || part[5] > 59)
        return false;
    const char *p = ts + n;
    int frac_ms = 0;
    if (*p == '.') {
        if (n != 14)
            return false; /* a fraction only of seconds */
        size_t k = 1;
        int scale = 100;
        while (isdigit((unsigned char)p[k]) && k <= 4) {
            frac_ms += (p[k] - '0') * scale;
            scale /= 10;
            k++;
        }
        if (k == 1)
            return false;
        p += k;
    }
    struct tm tm = {.tm_year = part[0] - 1900,
                    .tm_mon = part[1] - 1,
                    .tm_mday = part[2],
                    .tm_hour = part[3],
                    .tm_min = part[4],
                    .tm_sec = part[5],
                    .tm_isdst = -1};
    time_t t;
    if (*p == '+' || *p == '-') {
        int hh, mm;
        if (strlen(p) != 5 || !digits(p + 1, 2, &hh) || !digits(p + 3, 2, &mm) || hh > 14 || mm > 59)
            return false;
        t = timegm(&tm) - (*p == '+' ? 1 : -1) * (time_t)(hh * 3600 + mm * 60);
    } else if (*p) {
        return false;
    } else {
        t = mktime(&tm);
        if (t == (time_t)-1)
            return false;
    }
    *ms = (int64_t)t * 1000 + frac_ms;
    return true;
}

static cb_hl7_kind at(const cb_hl7 *m, size_t seg, unsigned field, unsigned rep, unsigned comp, char *buf, size_t cap)
{
    return cb_hl7_get(m, (cb_hl7_at){seg, field, rep, comp, 0}, buf, cap);
}

/* Ten digits once spaces and hyphens are gone, into out; false otherwise. */
static bool national_number(const char *s, char out[16])
{
    size_t n = 0;
    for (; *s; s++) {
        if (*s == ' ' || *s == '-')
            continue;
        if (!isdigit((unsigned char)*s) || n == 10)
            return false;
        out[n++] = *s;
    }
    out[n] = 0;
    return n == 10;
}

static bool national_authority(const char *a)
{
    return !strcasecmp(a, "NHS") || !strcasecmp(a, "NHSNBR") || !strcasecmp(a, "NHS NUMBER") || !strcasecmp(a, "CHI") ||
           !strcmp(a, NHS_OID);
}

/* A CHI number: its authority says so, or it is in Scotland's range, its
 * first six digits a date (DDMMYY). */
static bool is_chi(const char *authority, const char *number)
{
    if (!strcasecmp(authority, "CHI"))
        return true;
    int dd = 0, mm = 0;
    digits(number, 2, &dd);
    digits(number + 2, 2, &mm);
    return strncmp(number, "32", 2) < 0 && dd >= 1 && dd <= 31 && mm >= 1 && mm <= 12;
}

/* One CX (PID-3 repetition or PID-2): national, local, or nothing. */
static void take_cx(const cb_hl7 *m, size_t pid, unsigned field, unsigned rep, const char *facility, cb_hl7_person *out)
{
    char id[64], authority[40] = "", type[16] = "", number[16];
    if (at(m, pid, field, rep, 1, id, sizeof id) != CB_HL7_VALUE)
        return;
    at(m, pid, field, rep, 4, authority, sizeof authority);
    if (!authority[0]) { /* HD may carry its name in a subcomponent: NHS&2.16...&ISO */
        char whole[40];
        if (cb_hl7_get(m, (cb_hl7_at){pid, field, rep, 4, 2}, whole, sizeof whole) == CB_HL7_VALUE)
            snprintf(authority, sizeof authority, "%s", whole);
    }
    at(m, pid, field, rep, 5, type, sizeof type);
    bool national = !strcasecmp(type, "NH") || national_authority(authority);
    if (national && national_number(id, number)) {
        char *slot = is_chi(authority, number) ? out->chi : out->nhs;
        if (!slot[0])
            snprintf(slot, 16, "%s", number);
        return;
    }
    if (out->n_local == CB_HL7_LOCAL_IDS)
        return;
    cb_hl7_local_id *l = &out->local[out->n_local++];
    snprintf(l->system, sizeof l->system, "%s%s%s", authority[0] ? authority : facility, type[0] ? ":" : "", type);
    snprintf(l->value, sizeof l->value, "%s", id);
}

static void name_of(const cb_hl7 *m, size_t pid, cb_hl7_person *out)
{
    char family[64] = "", given[64] = "", middle[64] = "";
    at(m, pid, 5, 1, 1, family, sizeof family);
    at(m, pid, 5, 1, 2, given, sizeof given);
    at(m, pid, 5, 1, 3, middle, sizeof middle);
    snprintf(out->name, sizeof out->name, "%s%s%s%s%s", given, given[0] && (middle[0] || family[0]) ? " " : "", middle,
             middle[0] && family[0] ? " " : "", family);
}

bool cb_hl7_person_of(const cb_hl7 *m, size_t pid, cb_hl7_person *out)
{
    *out = (cb_hl7_person){0};
    char facility[40] = "";
    if (at(m, 0, 4, 1, 1, facility, sizeof facility) != CB_HL7_VALUE)
        snprintf(facility, sizeof facility, "hl7");
    for (unsigned r = 1; r <= cb_hl7_repetitions(m, pid, 3); r++)
        take_cx(m, pid, 3, r, facility, out);
    if (!out->nhs[0] && !out->chi[0])
        for (unsigned r = 1; r <= cb_hl7_repetitions(m, pid, 2); r++)
            take_cx(m, pid, 2, r, facility, out);
    name_of(m, pid, out);
    char dob[32];
    int y, mo, d;
    if (at(m, pid, 7, 1, 1, dob, sizeof dob) == CB_HL7_VALUE && strlen(dob) >= 8 && digits(dob, 4, &y) &&
        digits(dob + 4, 2, &mo) && digits(dob + 6, 2, &d) && mo >= 1 && mo <= 12 && d >= 1 && d <= days_in(y, mo))
        snprintf(out->birth_date, sizeof out->birth_date, "%04u-%02u-%02u", (unsigned)y % 10000u, (unsigned)mo % 100u,
                 (unsigned)d % 100u);
    return out->nhs[0] || out->chi[0] || out->n_local;
}
