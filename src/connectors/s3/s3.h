/* Shared by the S3 sinks: the access key pair rule. */
#ifndef SL_CONNECTORS_S3_S3_H
#define SL_CONNECTORS_S3_S3_H

#include "core/err.h"

#include <jansson.h>

/* access_key_id and secret_access_key come together (SigV4 needs both). */
int sl_s3_check_keys(const json_t *config, struct sl_err *err);

#endif
