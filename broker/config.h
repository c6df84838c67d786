/* Broker configuration: read from YAML with libcyaml, or the embedded default
 * (config/carebridge.yaml compiled into the binary, so the two cannot drift). */
#ifndef CB_CONFIG_H
#define CB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    CB_AGENCY_HEALTH = 1,
    CB_AGENCY_HOUSING,
    CB_AGENCY_SOCIAL_CARE,
    CB_AGENCY_VOLUNTARY,
} cb_agency_kind;

typedef struct {
    char *id; /* [a-z0-9][a-z0-9-]{0,62}: used in keys and feed topics */
    cb_agency_kind kind;
    char *name;  /* display name */
    char **keys; /* its CURVE public keys (Z85), several while one is rotated */
    unsigned n_keys;
} cb_agency;

/* Who a connection is, once CURVE has proved its key: an agency, or a person
 * with a role (README, "Trust"). */
typedef enum {
    CB_ROLE_AGENCY = 1,
    CB_ROLE_COORDINATOR, /* sees what its agencies see */
    CB_ROLE_LEAD,        /* the report and status: never a person */
    CB_ROLE_OPERATOR,    /* status and replay: never a person */
} cb_role;

typedef struct {
    char *name; /* [A-Za-z0-9._-], not an agency's id: the audit's "who" */
    cb_role role;
    char **agencies; /* a coordinator's agencies */
    unsigned n_agencies;
    char *key; /* Z85 public key */
} cb_person;

/* Fields an event must carry for its recipients, by JSON path from the
 * envelope ("referral.consent"): for every recipient, or only when one of
 * the given kind receives it. */
typedef struct {
    char *event;                   /* "referral", "discharge" or "handover" */
    cb_agency_kind recipient_kind; /* 0: whoever receives it */
    char **fields;
    unsigned n_fields;
} cb_required;

/* The flag rules' thresholds (README, "Flags"). */
typedef struct {
    bool enabled;
    uint32_t acknowledge_hours, acknowledge_urgent_hours; /* URGENT or EMERGENCY */
    uint32_t decide_hours, decide_urgent_hours;
    uint32_t bounce_days, bounce_agencies;
    uint32_t discharge_confirm_hours; /* before the planned date */
    uint32_t tick_seconds;            /* how often the time-based rules run */
    cb_required *required;
    unsigned n_required;
} cb_flags_config;

/* How long records are kept (README, "Trust": retention); 0 keeps them for ever. */
typedef struct {
    uint32_t audit_days;
    uint32_t event_days;       /* events, with their indexes, queue entries and the flags' records of them */
    uint32_t closed_flag_days; /* a resolved flag, from when it was resolved */
} cb_retention_config;

typedef struct {
    char *endpoint; /* ROUTER: agencies and the CLI connect here */
    char *feed;     /* XPUB: every committed event, for SUB sockets */
    char *queries;  /* ROUTER served by the query thread: status and journeys only */
    char *metrics;  /* HOST:PORT of /metrics, /healthz and /readyz ("": none) */
    char *data_dir;
    uint64_t map_size_mb;
    uint32_t publish_fill_percent; /* publishes refused above this fill of the map */
    uint32_t max_event_bytes;
    uint32_t window;                /* deliveries in flight per agency */
    uint32_t redelivery_timeout_ms; /* first redelivery; doubles each attempt */
    uint32_t redelivery_max_ms;     /* backoff cap */
    uint32_t max_attempts;          /* deliveries before an entry is parked */
    uint32_t heartbeat_ms;
    cb_flags_config flags;
    cb_retention_config retention;
    char *key_file; /* broker.key_file: the broker's CURVE secret key; NULL: CURVE off */
    cb_agency *agencies;
    unsigned n_agencies;
    cb_person *people;
    unsigned n_people;
    /* "health, housing, social-care, voluntary" (", ..." when too many to
     * list): what an UNKNOWN_AGENCY reason offers instead. */
    char agency_list[160];
} cb_config;

/* Load from path, or the embedded default when path is NULL. NULL on failure,
 * with a message in err naming the key and what is wrong (main exits 2). */
cb_config *cb_config_load(const char *path, char *err, size_t cap);
void cb_config_free(cb_config **cfg_p);

const cb_agency *cb_config_agency(const cb_config *cfg, const char *id);
const char *cb_agency_kind_name(cb_agency_kind kind); /* "HEALTH", ... */
const char *cb_role_name(cb_role role);               /* "agency", "coordinator", ... */

/* The embedded default YAML text, for --help and tests. */
extern const char cb_config_default_yaml[];

#endif
