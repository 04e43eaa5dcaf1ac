/*
 * veil/json.h: a strict JSON parser (RFC 8259) into an arena-allocated tree, and the escaping
 * needed to write JSON. Used for policy files, collateral, and the key broker's messages.
 *
 * Every value keeps a view of its exact input bytes, because some signatures (Intel's TCB info
 * and QE identity) cover the bytes of a value as received, never a re-serialisation.
 */
#ifndef VEIL_JSON_H
#define VEIL_JSON_H

#include "veil/base.h"

#define VEIL_JSON_MAX_DEPTH 32

enum veil_json_type {
    VEIL_JSON_NULL,
    VEIL_JSON_BOOL,
    VEIL_JSON_NUMBER,
    VEIL_JSON_STRING,
    VEIL_JSON_ARRAY,
    VEIL_JSON_OBJECT,
};

struct veil_json;

struct veil_json_member {
    const char *key; /* decoded, NUL-terminated */
    size_t key_len;
    struct veil_json *value;
};

/* One JSON value; every pointer lives in the arena it was parsed into. */
struct veil_json {
    enum veil_json_type type;
    struct veil_span raw; /* the exact input bytes of this value */
    bool b;
    bool is_int; /* a number without fraction or exponent that fits int64 */
    int64_t i;
    double num;
    const char *str; /* decoded string, NUL-terminated (no embedded NULs accepted) */
    size_t str_len;
    size_t n;                         /* array items or object members */
    struct veil_json **items;         /* arrays */
    struct veil_json_member *members; /* objects */
};

/*
 * Parses one JSON document (strict: no comments, no trailing commas, no duplicate object keys,
 * valid UTF-8, no NUL in strings, depth at most VEIL_JSON_MAX_DEPTH, only whitespace after the
 * value). Pure. All memory comes from arena a, whose cap bounds what the input can cost.
 * Errors: VEIL_E_FORMAT (with the byte position in eb), VEIL_E_LIMIT (depth, arena cap),
 * VEIL_E_NOMEM. *out is NULL on failure.
 */
VEIL_NODISCARD veil_err veil_json_parse(struct veil_span text, struct veil_arena *a,
                                        struct veil_json **out, struct veil_errbuf *eb);

/* The member key of object obj, or NULL (also when obj is NULL or not an object). */
const struct veil_json *veil_json_get(const struct veil_json *obj, const char *key);

/* The string member key of obj, or NULL when absent or not a string. */
const char *veil_json_get_str(const struct veil_json *obj, const char *key);

/*
 * Appends s to b as a quoted JSON string, escaping quotes, backslashes and control bytes.
 * Errors: those of veil_buf_append.
 */
VEIL_NODISCARD veil_err veil_json_append_str(struct veil_buf *b, struct veil_span s);

#endif /* VEIL_JSON_H */
