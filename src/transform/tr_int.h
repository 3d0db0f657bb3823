/* Private to src/transform: the compiled chain, shared by transform.c (compiling, and the
 * reference path on a jansson tree) and tr_fast.c (the same chain rewritten straight from
 * MessagePack to MessagePack when it can be). */
#ifndef SL_TRANSFORM_TR_INT_H
#define SL_TRANSFORM_TR_INT_H

#include "core/buf.h"
#include "transform/transform.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum tk { T_FILTER, T_MASK, T_REPLACE, T_INSERT, T_UNWRAP, T_TSCONV, T_CAST, T_ROUTE };

/* A name of a transform's config, resolved once for tr_fast.c (strings borrowed from the
 * config): MaskField's fields, ReplaceField's include / exclude / rename (k -> nk), InsertField's
 * static members (their values encoded in mp) and timestamp field, Cast's spec (ty: its first
 * letter). */
struct tr_name {
    const char *k, *nk;
    size_t kl, nkl;
    uint8_t *mp;
    size_t mpl;
    char ty;
    int list; /* ReplaceField: 0 include, 1 exclude, 2 rename; InsertField: 0 static, 1 timestamp */
};

struct tr {
    enum tk k;
    json_t *cfg; /* the validated config */
    struct sl_expr *cond;
    int keep;              /* Filter */
    char mask;             /* MaskField */
    int del_mode;          /* ExtractNewRecordState */
    int to_string;         /* TimestampConverter */
    int include;           /* ReplaceField has include (even empty) */
    struct tr_name *names; /* when the chain is fast */
    size_t nnames;
};

struct sl_transforms {
    struct tr *v;
    size_t n;
    int routes; /* has a ContentRouter */
    int fast;   /* tr_fast.c can run the chain (sl_tr_fast_plan said so) */
};

/* Cast's conversion of v to ty ("int64", "float64", "string", "boolean"): 0 with *out NULL
 * when v stays as it is, 0 with *out a new value, or -1 with why ("key: ... is not an int64"). */
int sl_tr_cast_value(const json_t *v, const char *key, const char *ty, json_t **out, char *why,
                     size_t whylen);

/* Decides whether t can run on tr_fast.c's path (Filter, MaskField, ReplaceField, InsertField
 * and Cast on top-level fields only) and prepares it (t->fast, InsertField's encoded values).
 * 0, or -1 out of memory. */
int sl_tr_fast_plan(struct sl_transforms *t);
void sl_tr_fast_release(struct tr *tr);

enum sl_tr_fast { SL_TRF_KEEP, SL_TRF_DROP, SL_TRF_OTHER };
/* Runs a fast chain on a MessagePack payload. KEEP: out (reset first) holds exactly what the
 * jansson path gives; DROP: a Filter dropped it; OTHER: the payload or a step is something
 * this path does not do (not a map, a non-canonical encoding, repeated keys, a Cast that
 * fails...): the caller runs the jansson path, which decides. */
enum sl_tr_fast sl_tr_fast_apply(const struct sl_transforms *t, const uint8_t *mp, size_t len,
                                 const struct sl_expr_rec *r, struct sl_buf *out);

#endif
