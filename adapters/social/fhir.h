/* FHIR R4 resources from a social care system, mapped to carebridge events
 * in carebridge's own JSON (an Envelope, as cb_json reads it), so every
 * check the broker's contract has is made once, by the one mapping.
 *
 * Errors are what FHIR servers answer: the HTTP status (400 for what is not
 * a resource of the right type, 422 for a resource that cannot be used), an
 * OperationOutcome issue code and the FHIRPath of the element at fault.
 * Messages name elements, never a value (it may be a name or an NHS
 * number). */
#ifndef CB_FHIR_H
#define CB_FHIR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CB_FHIR_NHS_NUMBER "https://fhir.nhs.uk/Id/nhs-number"

typedef struct {
    int http_status;      /* 400 or 422 */
    char code[24];        /* OperationOutcome.issue.code: structure, required, value, not-found, not-supported,
                           * extension */
    char expression[128]; /* FHIRPath: "ServiceRequest.subject" */
    char text[300];       /* diagnostics */
} cb_fhir_error;

/* An organisation identifier that stands for an agency: real resources name
 * organisations by ODS code, not by carebridge's agency ids. */
typedef struct {
    const char *system; /* NULL: any system */
    const char *value;
    const char *agency;
} cb_fhir_org;

typedef struct {
    const char *agency;          /* the agency this adapter serves: the sender */
    const char *const *agencies; /* the configured agency ids a performer may name */
    size_t n_agencies;
    const cb_fhir_org *orgs; /* identifiers that name an agency too */
    size_t n_orgs;
} cb_fhir_opts;

/* The resource types served at /fhir/<type>: read and searched. */
extern const char *const cb_fhir_served[3];

/* body as a resource of resource_type (a leading byte-order mark ignored);
 * 400 when it is not JSON, not an object or another type, 422 `extension`
 * naming the first modifierExtension (none is known here). The caller
 * json_decref()s it. */
json_t *cb_fhir_parse(const char *body, size_t len, const char *resource_type, cb_fhir_error *err);

/* A ServiceRequest (status active) as a referral event: README, "FHIR
 * ServiceRequest", has the mapping. NULL with err (422) when it cannot be
 * one. The caller json_decref()s it. */
json_t *cb_fhir_referral(const json_t *service_request, const cb_fhir_opts *opts, cb_fhir_error *err);

/* A Task about a referral (focus) as the answer to it: received
 * ACKNOWLEDGED, accepted ACCEPTED, rejected DECLINED (statusReason the
 * reason), completed or cancelled a closure; to the agency its requester
 * names. referral, when not NULL, is the ServiceRequest this adapter holds
 * that the focus names: a Task that omits its requester or its patient
 * takes them from it, and it correlates by the referral's own eventId.
 * README, "FHIR Task", has the rest. NULL with err (422) otherwise. */
json_t *cb_fhir_answer(const json_t *task, const json_t *referral, const cb_fhir_opts *opts, cb_fhir_error *err);

/* The resource a FHIR message (a Bundle of type message, as BaRS sends one to
 * $process-message) is about: its MessageHeader's focus, a ServiceRequest or
 * a Task, with what it references in the Bundle (the Patient, the
 * performer's Organization, a PractitionerRole and its organization)
 * inlined as contained resources and the references rewritten to them, so
 * it maps as a resource posted alone does. Its type into kind. NULL with err
 * (422, the element) when the Bundle is no such message. The caller
 * json_decref()s it. */
json_t *cb_fhir_message_focus(const json_t *bundle, char kind[16], cb_fhir_error *err);

/* The id a Task's focus gives its referral by ("ServiceRequest/<id>", or
 * the id a focus.identifier's eventId is served under), into out; false
 * when it names none. */
bool cb_fhir_focus_id(const json_t *task, char out[65]);

/* A referral event (carebridge JSON, as cb_json writes a delivered
 * Envelope) as the FHIR R4 ServiceRequest a social care system is served:
 * the inverse of cb_fhir_referral, the patient, consent and outcomes as
 * contained resources. A discharge is served as one too: category
 * "discharge", the planned date as occurrenceDateTime, care needs as the
 * reason, setting, destination and medication as notes. NULL for any other
 * event. */
json_t *cb_fhir_service_request_of(const json_t *event);

/* An answer to a referral (a response or a closure, carebridge JSON) as the
 * FHIR R4 Task a social care system is served: the inverse of
 * cb_fhir_answer. ACKNOWLEDGED received, ACCEPTED accepted, DECLINED
 * rejected, REDIRECTED rejected (statusReason naming where), INFO_REQUESTED
 * received with a businessStatus naming the fields, a closure completed.
 * NULL when the event is neither. */
json_t *cb_fhir_task_of(const json_t *event);

/* An admission (carebridge JSON) as the FHIR R4 Encounter a social care
 * system is served: in-progress, inpatient, the ward as the active
 * location (a transfer's previous one completed before it), the attending
 * doctor as participant, the reason as reasonCode. NULL for any other
 * event. */
json_t *cb_fhir_encounter_of(const json_t *event);

/* An update (carebridge JSON) applied to the resource served for the event
 * it updates. A ServiceRequest: a discharge's new planned date as
 * occurrenceDateTime, its destination and the update's note as notes, a
 * referral's reason as reasonCode. An Encounter: an admission's new ward
 * as the active location, the one before completed. False when the update
 * carries nothing served here. */
bool cb_fhir_apply_update(json_t *service_request, const json_t *update_event);

/* The FHIR id ([A-Za-z0-9.-]{1,64}) an event is served under: the event id
 * itself when it is one, else its fit characters and a hash. */
void cb_fhir_id(const char *event_id, char out[65]);

/* One OperationOutcome.issue. */
typedef struct {
    const char *severity;    /* fatal, error, warning, information */
    const char *code;        /* the issue type: processing, business-rule, ...; NULL: processing */
    const char *expression;  /* FHIRPath of the element, or NULL */
    const char *diagnostics; /* NULL: none */
    const char *flag;        /* a carebridge flag type, as details.coding, or NULL */
} cb_fhir_issue;

/* An OperationOutcome with these issues; the caller frees the text. It is
 * written out directly, not built as a tree: every POST is answered with one,
 * and jansson's tree cost a sixth of the adapter's time. A string that is not
 * valid UTF-8 (a text cut to fit) has its bytes past ASCII written as '?'. */
char *cb_fhir_outcome_of(const cb_fhir_issue *issues, size_t n);

/* An OperationOutcome with one issue per error, each of severity
 * ("error", "warning"); the caller frees the text. */
char *cb_fhir_outcome(const cb_fhir_error *errors, size_t n, const char *severity);

#endif
